"""Adapter arithmetic: `combine` writes a LoRA whose update is the weighted sum of its parents' updates, checked
against weights merged by hand from each parent alone; what it refuses, and what it records."""

import json
import tempfile

import pytest
import torch
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.arithmetic import combine, parse_weights
from vlm_peft_bench.cli import main
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.paths import display_path

from .adapter_factory import lora_model
from .conftest import REPO
from .test_shared_prefix import answers

ZOO_LORA = REPO / "adapters_zoo" / "weights" / "lora-r8__nanollava-tiny__cvbench_mini"
ZOO_DORA = REPO / "adapters_zoo" / "weights" / "dora-r8__nanollava-tiny__cvbench_mini"


def base():
    return load_nanollava("nanollava-tiny", "cpu", "float32")


def merged_by_hand(parents, weights) -> dict[str, torch.Tensor]:
    """W + sum_i w_i (W_i - W), each W_i the base with parent i alone merged by peft."""
    original = {k: v.clone() for k, v in base().model.state_dict().items()}
    out = {k: v.clone() for k, v in original.items()}
    for parent, weight in zip(parents, weights):
        merged = attach_adapter(base().model, str(parent), merge_lora=True).model.state_dict()
        for k in out:
            out[k] += weight * (merged[k] - original[k])
    return out


@pytest.fixture(scope="module")
def parents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parents")
    lora_model(seed=1, targets=("q_proj", "v_proj")).save_pretrained(str(folder / "a"), save_embedding_layers=False)
    return [folder / "a", ZOO_LORA]  # the zoo's was saved under another stack's names on one of the two stacks


def test_the_combination_is_the_weighted_sum_of_updates(parents, tmp_path, monkeypatch):
    weights = [0.5, -0.75]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = combine([str(p) for p in parents], weights, tmp_path / "combined")
    assert list(scratch.iterdir()) == []  # peft's work folder is gone
    loaded = base()
    batch = loaded.processor(["How many squares are there?"], [Image.new("RGB", (64, 64), "teal")])
    expected_model = base().model
    expected_model.load_state_dict(merged_by_hand(parents, weights))
    with torch.no_grad():
        expected = expected_model(**batch).logits
        got = attach_adapter(loaded.model, str(out)).model(**batch).logits
        alone = attach_adapter(base().model, str(parents[0])).model(**batch).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, alone, atol=1e-3)
    record = json.loads((out / "combination.json").read_text())
    assert record["weights"] == weights and record["combination_type"] == "cat"
    # a parent inside the repository is named relative to its root (a card must not name one machine)
    assert [p["path"] for p in record["parents"]] == [display_path(p) for p in parents]
    assert not any(p["path"].startswith("/") for p in record["parents"] if "adapters_zoo" in p["path"])
    assert all(len(p["sha256"]) == 64 and p["method"] == "lora" for p in record["parents"])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 4 + 8 and config["lora_alpha"] == config["r"]  # ranks add up; scaling 1


def test_what_is_refused(parents, tmp_path):
    with pytest.raises(AdapterError, match="combine adds LoRA adapters, or sums ReFT adapters' edits; not lora, dora"):
        combine([str(parents[0]), str(ZOO_DORA)], [1, 1], tmp_path / "x")
    with pytest.raises(AdapterError, match="at least two adapters"):
        combine([str(parents[0])], [1], tmp_path / "x")
    with pytest.raises(AdapterError, match="3 weights for 2 adapters"):
        parse_weights("1,2,3", 2)
    with pytest.raises(AdapterError, match="numbers separated by commas"):
        parse_weights("half,half", 2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        combine([str(p) for p in parents], [1, 1], tmp_path / "full")
    assert not (tmp_path / "x").exists()


def test_command(parents, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["combine", str(parents[0]), str(parents[1]), "--weights", "0.5,0.5", "--out", str(tmp_path / "c")])
    assert done.value.code == 0 and f"-> {tmp_path / 'c'}" in capsys.readouterr().out
    assert (tmp_path / "c" / "adapter_model.safetensors").is_file()


def reft_parent(folder, layers, positions, share, seed):
    from vlm_peft_bench.adapters.reft_files import save_reft_folder

    from .adapter_factory import reft_interventions

    groups = 1 if share else len(positions.split("+"))
    return save_reft_folder(folder, reft_interventions(layers=tuple(layers) * groups, seed=seed), positions, share)


def test_reft_adapters_combine_as_a_sum_of_edits(tmp_path):
    """h + sum_i w_i (f_i(h) - h) at each parent's positions, every f_i reading the unedited h (hooks written
    here); not the parents applied one after the other."""
    from vlm_peft_bench.adapters.positions import position_groups
    from vlm_peft_bench.adapters.reft_folder import check_reft, language_model
    from vlm_peft_bench.runner import Runner
    from vlm_peft_bench.shared_prefix import PromptRequest

    specs = [((0, 2), "f2+l2", False, 1), ((2, 3), "l3", True, 2)]
    parents = [reft_parent(tmp_path / f"p{i}", *spec) for i, spec in enumerate(specs)]
    weights = [0.7, -0.4]
    out = combine([str(p) for p in parents], weights, tmp_path / "sum")
    assert json.loads((out / "composition.json").read_text())["weights"] == weights
    loaded = base()
    runner = Runner(loaded.model, loaded.processor, torch.device("cpu"))
    images = [Image.new("RGB", (64, 64), "green"), Image.new("RGB", (72, 64), "red")]
    batch, lengths = runner.inputs(["How many squares?", "Which object is closest to the camera?"], images)
    width = batch["input_ids"].shape[1]
    edits = {}  # layer -> [(weight, module, [(row, column)])]
    for parent, weight, (_, positions, share, _) in zip(parents, weights, specs):
        found = check_reft(loaded.model, parent)
        per_group = len(found.specs) // (1 if share else len(positions.split("+")))
        for index, (spec, module) in enumerate(zip(found.specs, found.modules)):
            where = []
            for b, n in enumerate(lengths):
                groups = position_groups(positions, n)
                chosen = sorted({p for g in groups for p in g}) if share else groups[index // per_group]
                where += [(b, width - n + p) for p in chosen]
            edits.setdefault(spec.layer, []).append((weight, module, where))

    def summed(entries):
        def hook(_m, _i, output):
            hidden = output[0] if isinstance(output, tuple) else output
            out_ = hidden.clone()
            for weight, module, where in entries:
                rows, cols = map(list, zip(*where))
                out_[rows, cols] += weight * (module(hidden[rows, cols]) - hidden[rows, cols])
            return (out_, *output[1:]) if isinstance(output, tuple) else out_
        return hook

    layers = language_model(loaded.model).layers
    handles = [layers[k].register_forward_hook(summed(v)) for k, v in edits.items()]
    try:
        with torch.no_grad():
            expected = loaded.model(**batch).logits
    finally:
        for h in handles:
            h.remove()
    attached = attach_adapter(loaded.model, str(out))
    assert attached.method == "reft-sum"
    steered = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    with torch.no_grad():
        got = steered.forward(batch, lengths).logits
    assert torch.allclose(got, expected, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(got, loaded.model(**batch).logits, atol=1e-3)
    requests = [PromptRequest(q, images[0]) for q in ("What colour is it?", "How many shapes are there?")]
    gen = {"max_new_tokens": 5, "temperature": 0, "until": []}
    assert answers(steered, requests, gen, 2, True) == answers(steered, requests, gen, 2, False)
    from vlm_peft_bench.methods.params import account

    assert account("nanollava-tiny", adapter=str(out))["trainable"] == sum(
        account("nanollava-tiny", adapter=str(p))["trainable"] for p in parents)
