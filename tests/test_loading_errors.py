"""Bad `pretrained` values fail at once with a message naming the problem and the fix."""

import shutil

import pytest

from vlm_peft_bench.nanollava.checkpoint import CheckpointError
from vlm_peft_bench.nanollava.loading import TINY_DIR, load_nanollava, resolve_dtype


def copy_tiny(tmp_path, skip=()):
    folder = tmp_path / "model"
    folder.mkdir()
    for f in TINY_DIR.iterdir():
        if f.name not in skip:
            shutil.copy(f, folder / f.name)
    return folder


def test_unknown_name():
    with pytest.raises(CheckpointError, match="neither 'nanollava-tiny', an existing folder, nor a Hub id"):
        load_nanollava("nanollava-small")


def test_missing_local_path():
    with pytest.raises(CheckpointError, match="existing folder"):
        load_nanollava("./no/such/folder")


def test_hub_id_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Hub is not reachable.*huggingface-cli download"):
        load_nanollava("qnguyen3/nanoLLaVA")


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        (("config.json",), "config.json"),
        (("model.safetensors",), "weights"),
        (("tokenizer.json",), "tokenizer"),
    ],
)
def test_folder_missing_files(tmp_path, skip, message):
    folder = copy_tiny(tmp_path, skip)
    with pytest.raises(CheckpointError, match=f"missing.*{message}"):
        load_nanollava(str(folder))


def test_truncated_weights(tmp_path):
    folder = copy_tiny(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_nanollava(str(folder))


def test_weights_of_another_shape(tmp_path):
    import json

    folder = copy_tiny(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="another shape"):
        load_nanollava(str(folder))


def test_pickled_code_is_refused(tmp_path):
    import pickle

    folder = copy_tiny(tmp_path, skip=("model.safetensors",))

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_nanollava(str(folder))


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype='float33'"):
        resolve_dtype("float33", "cpu")
