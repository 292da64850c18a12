"""Third-party adapters are checked before use; nothing in them is executed."""

import json
import pickle

import pytest
import torch

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava

from .adapter_factory import lora_model, reft_interventions, save_reft


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture
def reft_dir(tmp_path):
    return save_reft(reft_interventions(layers=(0, 1)), tmp_path / "reft")


@pytest.fixture
def lora_dir(tmp_path):
    lora_model().save_pretrained(tmp_path / "lora")
    return tmp_path / "lora"


def attach(folder, **kwargs):
    return attach_adapter(load_nanollava("nanollava-tiny").model, str(folder), **kwargs)


def edit_config(folder, change):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def test_reft_for_another_hidden_size(reft_dir):
    edit_config(reft_dir, lambda c: c.update(intervention_dimensions=[1024, 1024]))
    with pytest.raises(AdapterError, match="hidden size 1024, this model's is 128"):
        attach(reft_dir)


def test_reft_for_more_layers(reft_dir):
    def deeper(c):
        c["representations"][1][0] = 23
        c["representations"][1][1] = "language_model.model.layers[23].output"
        c["sorted_keys"][1] = c["sorted_keys"][1].replace("layers[1]", "layers[23]")
    edit_config(reft_dir, deeper)
    key = next(reft_dir.glob("intkey_*layers[[]1[]]*"))
    key.rename(reft_dir / key.name.replace("layers[1]", "layers[23]"))
    with pytest.raises(AdapterError, match="layer 23, this model has 4 layers"):
        attach(reft_dir)


def test_unknown_intervention_type(reft_dir):
    edit_config(reft_dir, lambda c: c.update(intervention_types=["<class 'evil.Backdoor'>"] * 2))
    with pytest.raises(AdapterError, match="unknown intervention type 'Backdoor'"):
        attach(reft_dir)


def test_pickled_code_in_intervention_file(reft_dir, capsys):
    path = next(reft_dir.glob("intkey_*.bin"))
    path.write_bytes(pickle.dumps({"weight": Evil()}))
    with pytest.raises(AdapterError, match="refused or unreadable"):
        attach(reft_dir)
    assert "this must never run" not in capsys.readouterr().out


def test_nan_intervention_weights(reft_dir):
    path = next(reft_dir.glob("intkey_*.bin"))
    state = torch.load(path, weights_only=True)
    state["weight"] = torch.full_like(state["weight"], float("nan"))
    torch.save(state, path)
    with pytest.raises(AdapterError, match="NaN"):
        attach(reft_dir)


def test_missing_intervention_file(reft_dir):
    next(reft_dir.glob("intkey_*.bin")).unlink()
    with pytest.raises(AdapterError, match="missing intkey_"):
        attach(reft_dir)


def test_reft_without_positions_needs_them(reft_dir):
    (reft_dir / "vlm_peft_bench.json").unlink()
    with pytest.raises(AdapterError, match="pass positions="):
        attach(reft_dir)
    assert attach(reft_dir, positions="f5+l5").reft.positions == "f5+l5"


def test_truncated_lora(lora_dir):
    path = lora_dir / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(AdapterError, match="truncated or corrupt"):
        attach(lora_dir)


def test_lora_for_another_base(lora_dir):
    from safetensors.torch import load_file, save_file

    path = lora_dir / "adapter_model.safetensors"
    state = load_file(str(path))
    key = next(k for k in state if ".lora_A." in k)
    state[key] = torch.zeros(state[key].shape[0], 1024)
    save_file(state, str(path))
    with pytest.raises(AdapterError, match="another base model"):
        attach(lora_dir)


def test_nan_lora(lora_dir):
    from safetensors.torch import load_file, save_file

    path = lora_dir / "adapter_model.safetensors"
    state = load_file(str(path))
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(path))
    with pytest.raises(AdapterError, match="NaN"):
        attach(lora_dir)


def test_pickled_lora_bin(lora_dir):
    (lora_dir / "adapter_model.safetensors").unlink()
    (lora_dir / "adapter_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(AdapterError, match="refused"):
        attach(lora_dir)


def test_full_weights_for_another_base(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "full"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file({"language_model.lm_head.weight": torch.zeros(10, 10)}, str(folder / "model.safetensors"))
    with pytest.raises(AdapterError, match="shape"):
        attach(folder)


def test_adapter_hub_id_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AdapterError, match="adapter='someone/lora-nanollava'.*Hub is not reachable"):
        attach("someone/lora-nanollava")
