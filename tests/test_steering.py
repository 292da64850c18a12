"""Steering vectors (shift and contrastive): the derived vectors against an independent computation, the folder
format (pyvene's, checked with pyvene itself where installed), how vlreft applies them (alpha, positions, shared
image prefixes), and what is counted and described."""

import json

import pytest
import torch
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.positions import position_groups
from vlm_peft_bench.adapters.reft_folder import language_model
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.methods.inspect import inspect_adapter
from vlm_peft_bench.methods.params import account
from vlm_peft_bench.methods.table import recognise
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.shared_prefix import PromptRequest
from vlm_peft_bench.steering.folder import save_steering
from vlm_peft_bench.steering.shift import derive_contrast, derive_shift, task_prompts

from .adapter_factory import HIDDEN
from .conftest import REPO
from .test_shared_prefix import answers

LORA = REPO / "adapters_zoo" / "weights" / "lora-r8__nanollava-tiny__cvbench_mini"
N_ITEMS = 6


def states_by_hand(model, processor, prompts, positions: str, layers) -> torch.Tensor:
    """Mean over prompts and positions of each layer's output, one prompt at a time (no padding), from transformers'
    own hidden_states (entry i + 1 is layer i's output for every layer but the last)."""
    total = torch.zeros(len(layers), HIDDEN, dtype=torch.float64)
    count = 0
    for p in prompts:
        batch = processor([p.text], [p.image])
        n = batch["input_ids"].shape[1]
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True).hidden_states
        where = sorted({q for g in position_groups(positions, n) for q in g})
        for k, layer in enumerate(layers):
            total[k] += hidden[layer + 1][0, where].double().sum(0)
        count += len(where)
    return (total / count).float()


@pytest.fixture(scope="module")
def shift_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("steer") / "shift"
    return derive_shift("nanollava-tiny", str(LORA), "cvbench_mini", out, layers="0,1,2", positions="f2+l3",
                        alpha=1.5, limit=N_ITEMS, batch_size=4)


def test_shift_is_the_mean_state_difference_computed_by_hand(shift_folder):
    prompts, _ = task_prompts("cvbench_mini", N_ITEMS)
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    base = states_by_hand(loaded.model, loaded.processor, prompts, "f2+l3", [0, 1, 2])
    adapted_model = attach_adapter(load_nanollava("nanollava-tiny", "cpu", "float32").model, str(LORA),
                                   merge_lora=True).model
    adapted = states_by_hand(adapted_model, loaded.processor, prompts, "f2+l3", [0, 1, 2])
    for k in range(3):
        saved = torch.load(next(shift_folder.glob(f"intkey_*layers[[]{k}[]]*")), weights_only=True)
        assert torch.allclose(saved["source_representation"], 1.5 * (adapted[k] - base[k]), atol=2e-5), k
    record = json.loads((shift_folder / "steering.json").read_text())
    assert record["kind"] == "shift" and record["strength"] == 1.5 and record["layers"] == [0, 1, 2]
    assert record["data"]["items"] == N_ITEMS and record["parents"]["method"] == "lora"
    assert json.loads((shift_folder / "vlm_peft_bench.json").read_text())["positions"] == "f2+l3"


def _prompt_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_contrast_is_the_difference_of_mean_states(tmp_path):
    Image.new("RGB", (64, 64), "blue").save(tmp_path / "blue.png")
    positive = _prompt_file(tmp_path / "pos.jsonl", [{"text": "Describe it in one word.", "image": "blue.png"},
                                                     {"text": "One word: what is it?"}])
    negative = _prompt_file(tmp_path / "neg.jsonl", [{"text": "Describe the picture in great detail, please."}])
    folder = derive_contrast("nanollava-tiny", positive, negative, tmp_path / "c", layers="1", positions="l2",
                             alpha=-2.0)
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    from vlm_peft_bench.steering.shift import read_prompt_file

    pos = states_by_hand(loaded.model, loaded.processor, read_prompt_file(positive), "l2", [1])
    neg = states_by_hand(loaded.model, loaded.processor, read_prompt_file(negative), "l2", [1])
    (saved,) = [torch.load(f, weights_only=True) for f in folder.glob("intkey_*")]
    assert torch.allclose(saved["source_representation"], -2.0 * (pos[0] - neg[0]), atol=2e-5)
    assert recognise(folder).name == "contrast"


def test_bad_prompt_files_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(AdapterError, match="bad.jsonl: line 2: not valid JSON"):
        derive_contrast("nanollava-tiny", bad, bad, tmp_path / "x")
    (tmp_path / "img.jsonl").write_text('{"text": "a", "image": "missing.png"}\n')
    with pytest.raises(AdapterError, match="img.jsonl: line 1: image .*missing.png"):
        derive_contrast("nanollava-tiny", tmp_path / "img.jsonl", bad, tmp_path / "x")
    (tmp_path / "notext.jsonl").write_text('{"prompt": "a"}\n')
    with pytest.raises(AdapterError, match="line 1: expected an object with a \"text\" string"):
        derive_contrast("nanollava-tiny", tmp_path / "notext.jsonl", bad, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def logits_with_hooks(model, batch, lengths, vectors: dict[int, torch.Tensor], positions: str):
    """Logits of the model with each vector added by a hook of ours at each row's positions (left padding)."""
    width = batch["input_ids"].shape[1]
    where = [(b, width - n + p) for b, n in enumerate(lengths) for g in position_groups(positions, n) for p in g]
    rows, cols = zip(*where)
    layers = language_model(model).layers

    def adder(vector):
        def hook(_m, _i, output):
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            hidden[list(rows), list(cols)] += vector
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook

    handles = [layers[k].register_forward_hook(adder(v)) for k, v in vectors.items()]
    try:
        with torch.no_grad():
            return model(**batch).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("alpha", [None, 3.0])
def test_vlreft_adds_the_vectors_at_their_positions_with_alpha(shift_folder, alpha):
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    runner = Runner(loaded.model, loaded.processor, torch.device("cpu"))
    images = [Image.new("RGB", (64, 64), "green"), Image.new("RGB", (70, 64), "red")]
    batch, lengths = runner.inputs(["How many squares?", "Which is closer to the camera, the cube or the ball?"],
                                   images)
    raw = {k: torch.load(next(shift_folder.glob(f"intkey_*layers[[]{k}[]]*")), weights_only=True)
           ["source_representation"] / 1.5 for k in range(3)}
    expected = logits_with_hooks(loaded.model, batch, lengths, {k: v * (alpha or 1.5) for k, v in raw.items()},
                                 "f2+l3")
    attached = attach_adapter(loaded.model, str(shift_folder), strength=alpha)
    steered = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    with torch.no_grad():
        got = steered.forward(batch, lengths).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, loaded.model(**batch).logits, atol=1e-3)


def test_a_vector_at_every_position_is_shared_across_questions_about_one_image(tmp_path):
    torch.manual_seed(0)
    folder = save_steering(tmp_path / "s", {k: torch.randn(HIDDEN) * 0.5 for k in (0, 3)},
                           {"kind": "shift", "strength": 1.0}, "all", "all")
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    attached = attach_adapter(loaded.model, str(folder))
    runner = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    requests = [PromptRequest(q, image) for q in ("What colour is it?", "Is it a square?", "How big is it?")]
    gen = {"max_new_tokens": 6, "temperature": 0, "until": []}
    assert runner.adapter.reft.positions_before(80, 70) == (tuple(range(70)),)  # the same for every prompt
    assert answers(runner, requests, gen, 3, True) == answers(runner, requests, gen, 3, False)


def test_counted_as_derived_not_trained_and_described(shift_folder):
    report = account("nanollava-tiny", adapter=str(shift_folder))
    assert report["trainable"] == 0 and report["derived"] == 3 * HIDDEN
    inspected = inspect_adapter(str(shift_folder), base="nanollava-tiny")
    assert inspected["method"] == "shift"
    assert inspected["settings"]["strength"] == 1.5 and inspected["settings"]["strength_name"] == "alpha"


def test_records_are_checked(tmp_path):
    folder = save_steering(tmp_path / "s", {0: torch.ones(HIDDEN)}, {"kind": "shift", "strength": 2.0}, "l1")
    model = load_nanollava("nanollava-tiny", "cpu", "float32").model
    record = json.loads((folder / "steering.json").read_text())
    for change, message in [({"strength": 0}, "strength=0: a non-zero number"),
                            ({"kind": "shift", "strength": "big"}, "strength='big'")]:
        (folder / "steering.json").write_text(json.dumps({**record, **change}))
        with pytest.raises(AdapterError, match=message):
            attach_adapter(model, str(folder))
    (folder / "steering.json").write_text(json.dumps({**record, "kind": "vibes"}))
    with pytest.raises(AdapterError, match="not a recognised adapter folder|matches"):
        attach_adapter(model, str(folder))
    with pytest.raises(FileExistsError, match="not a steering-vector folder"):
        save_steering(LORA.parent, {0: torch.ones(HIDDEN)}, {"kind": "shift", "strength": 1.0}, "l1")


def test_pyvene_reads_our_folder(shift_folder):
    """pyvene's own loader rebuilds AdditionInterventions holding our vectors (x alpha): what it would add."""
    from .adapter_factory import needs_pyreft

    needs_pyreft()
    from unittest import mock

    import pyvene
    import pyvene.models.intervenable_base as base

    from vlm_peft_bench.quiet import stdout_to_stderr

    with mock.patch.object(base, "get_dimension_by_component", lambda *_: HIDDEN), stdout_to_stderr():
        loaded = pyvene.IntervenableModel.load(str(shift_folder), load_nanollava("nanollava-tiny").model)
    keys = json.loads((shift_folder / "config.json").read_text())["sorted_keys"]
    assert list(loaded.interventions) == keys
    for key, theirs in loaded.interventions.items():
        assert type(theirs).__name__ == "AdditionIntervention"
        mine = torch.load(shift_folder / f"intkey_{key}.bin", weights_only=True)["source_representation"]
        assert torch.equal(theirs.source_representation, mine)
        base_state = torch.randn(2, 5, HIDDEN)
        assert torch.allclose(theirs(base_state.clone(), None), base_state + mine)


@pytest.mark.slow
def test_commands_write_folders_lmms_eval_evaluates(tmp_path):
    """`vlm-peft-bench steer icv` and `steer shift` on the tiny base, then `lmms_eval` with each folder: the results
    record the method, no trained and some derived parameters, and the alpha given."""
    import subprocess
    import sys
    from pathlib import Path

    binaries = Path(sys.executable).parent
    for command in (["icv", "--task", "cvbench_mini", "--k", "4", "--lambda", "0.05"],
                    ["shift", "--adapter", str(LORA), "--task", "cvbench_mini", "--limit", "8", "--positions", "l3"]):
        out = tmp_path / command[0]
        done = subprocess.run([str(binaries / "vlm-peft-bench"), "steer", *command, "--out", str(out)],
                              capture_output=True, text=True, timeout=900, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"-> {out}" in done.stdout
        results = tmp_path / f"results-{command[0]}"
        done = subprocess.run([str(binaries / "lmms_eval"), "--model", "vlreft", "--model_args",
                               f"pretrained=nanollava-tiny,adapter={out},alpha=0.5", "--tasks", "cvbench_mini",
                               "--limit", "6", "--batch_size", "4", "--output_path", str(results)],
                              capture_output=True, text=True, timeout=900, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        [path] = list(results.rglob("*_results.json"))
        block = json.loads(path.read_text())["vlm_peft_bench"]
        assert block["adapter"]["method"] == command[0] and block["adapter"]["alpha"] == 0.5
        assert block["params"]["trainable"] == 0 and block["params"]["derived"] == 4 * HIDDEN
