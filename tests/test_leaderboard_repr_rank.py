"""`vlm-peft-bench repr-rank` on the embedded tiny model: final-layer features taken at the right positions
(batching and left padding change nothing), adapters applied as in evaluation, the JSON the leaderboard reads."""

import json

import numpy as np
import pytest
import torch

from vlm_peft_bench.cli import main
from vlm_peft_bench.leaderboard.build import collect
from vlm_peft_bench.measure.repr_rank import final_layer_features
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.train.data import Example

from .adapter_factory import reft_interventions, save_reft
from .test_leaderboard_factory import write_card

POST = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def examples(mini_test):
    """Items of different prompt lengths (so a batch is left-padded), asked as cvbench_mini asks them."""
    docs = [mini_test[i] for i in range(0, len(mini_test), len(mini_test) // 6)][:6]
    return [Example(d, d["prompt"] + POST, d["answer"], d["image"].convert("RGB")) for d in docs]


def bare_runner(tiny) -> Runner:
    return Runner(tiny.model, tiny.processor, torch.device("cpu"))


@pytest.mark.slow
def test_features_do_not_depend_on_batching_or_padding(tiny, examples):
    lengths = {len(tiny.processor.encode([tiny.processor.prompt(e.text)])[0]) for e in examples}
    assert len(lengths) > 1  # the batch really is padded
    batched = final_layer_features(bare_runner(tiny), examples, batch_size=3)
    single = final_layer_features(bare_runner(tiny), examples, batch_size=1)
    assert batched.shape == (6, 128)
    np.testing.assert_allclose(batched, single, atol=1e-4)
    mean = final_layer_features(bare_runner(tiny), examples, positions="mean", batch_size=3)
    mean_single = final_layer_features(bare_runner(tiny), examples, positions="mean", batch_size=1)
    np.testing.assert_allclose(mean, mean_single, atol=1e-4)
    assert not np.allclose(mean, batched)


def test_reft_adapter_changes_the_features(tiny, examples, tmp_path):
    from vlm_peft_bench.methods.attach import attach_adapter
    from vlm_peft_bench.nanollava.loading import load_nanollava

    folder = save_reft(reft_interventions(), tmp_path / "reft", positions="l3")
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    attached = attach_adapter(loaded.model, str(folder))
    runner = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    with_reft = final_layer_features(runner, examples[:4], batch_size=3)
    bare = final_layer_features(bare_runner(tiny), examples[:4], batch_size=3)
    assert not np.allclose(with_reft, bare, atol=1e-3)


@pytest.mark.slow
def test_cli_writes_the_json_the_leaderboard_reads(tmp_path, capsys):
    from .test_leaderboard_factory import write_run

    out = tmp_path / "results" / "repr"
    with pytest.raises(SystemExit) as done:
        main(["repr-rank", "--base", "nanollava-tiny", "--task", "cvbench_mini", "--limit", "16", "--out", str(out)])
    assert done.value.code == 0 and "effective rank" in capsys.readouterr().out
    (path,) = out.glob("repr_rank__nanollava-tiny__base__cvbench_mini.json")
    doc = json.loads(path.read_text())
    assert doc["schema"] == "vlm-peft-bench/repr-rank" and doc["n"] == 16 and doc["hidden_size"] == 128
    curve = doc["cumulative"]
    assert len(curve) == 128 and all(a <= b + 1e-9 for a, b in zip(curve, curve[1:])) and abs(curve[-1] - 1) < 1e-6
    k = doc["effective_rank"]
    assert curve[k - 1] >= 0.9 - 1e-6 and (k == 1 or curve[k - 2] < 0.9)
    assert doc["effective_rank_ratio"] == round(k / 128, 6) and 0 < k <= 16
    assert doc["adapter"] is None and doc["positions"] == "last"

    # the leaderboard attaches it to the base row of a run with the same base (by hash) and task
    write_run(tmp_path / "results" / "base", "20260101_000000", base_hash=doc["base"]["hash"])
    write_card(tmp_path / "zoo", "unused", "lora", 10, base_hash=doc["base"]["hash"])
    board = collect([tmp_path / "results"], zoo=tmp_path / "zoo")
    (row,) = board["rows"]
    (cell,) = row["cells"].values()
    assert cell["repr_rank"]["effective_rank_ratio"] == doc["effective_rank_ratio"]
    assert cell["repr_rank"]["file"].endswith(path.name)
