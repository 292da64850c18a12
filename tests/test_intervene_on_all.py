"""ReFT with intervene_on="all" (interventions on every generated token too): the cached decoding paths give the
tokens of a step-by-step reference that re-runs the whole sequence at every step without a cache and applies each
intervention, through hooks written here, at its prompt positions and at every position after the prompt."""

import json

import pytest
import torch

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.positions import position_groups
from vlm_peft_bench.adapters.reft_files import META_FILE, save_reft_folder
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.methods.recipe import ReftSection
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.shared_prefix import PromptRequest

from .adapter_factory import reft_interventions

STEPS = 6
QUESTIONS = ["What colour is the square?", "How many shapes are there?", "Is it big?"]


def images():
    from PIL import Image

    return [Image.new("RGB", (64, 64), (30, 200, 90)), Image.new("RGB", (80, 64), "red")]


def save(folder, positions: str, share: bool, intervene_on: str):
    layers = (0, 2, 3)
    entries = reft_interventions(layers=layers * (1 if share else len(positions.split("+"))), seed=3)
    return save_reft_folder(folder, entries, positions, share, intervene_on)


def runner_for(folder) -> Runner:
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    attached = attach_adapter(loaded.model, str(folder))
    return Runner(attached.model, loaded.processor, torch.device("cpu"), attached)


def reference(runner: Runner, context: str, image, positions: str, share: bool) -> list[int]:
    """Greedy tokens, each step a full forward over prompt + tokens so far (no cache, one row, no padding), with
    each saved intervention applied by a hook of ours: at its group's prompt positions, and the last group's (or
    the shared one) at every position after the prompt."""
    reft = runner.adapter.reft
    inputs, [n] = runner.inputs([context], [image])
    groups = position_groups(positions, n)
    per_group = len(reft.specs) // (1 if share else len(groups))
    layers = reft.language_model.layers
    tokens: list[int] = []
    for _ in range(STEPS):
        ids = torch.cat([inputs["input_ids"], torch.tensor([tokens], dtype=torch.long)], 1)
        length = ids.shape[1]
        handles = []
        for index, (spec, module) in enumerate(zip(reft.specs, reft.modules)):
            group = 0 if share else index // per_group
            where = sorted({p for g in groups for p in g}) if share else list(groups[group])
            if share or group == len(groups) - 1:
                where += list(range(n, length))

            def hook(_m, _i, output, module=module, where=where):
                hidden = output[0] if isinstance(output, tuple) else output
                hidden = hidden.clone()
                hidden[0, where] = module(hidden[0, where])
                return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
            handles.append(layers[spec.layer].register_forward_hook(hook))
        try:
            with torch.no_grad():
                logits = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      pixel_values=inputs["pixel_values"]).logits
        finally:
            for h in handles:
                h.remove()
        tokens.append(int(logits[0, -1].argmax()))
    return tokens


def generated(runner: Runner, requests, batch_size: int, share: bool) -> list[list[int]]:
    gen = {"max_new_tokens": STEPS, "temperature": 0}
    found = {}
    tokenizer = runner.tokenizer
    with torch.inference_mode():
        for batch in runner.generate_requests(requests, batch_size, dict(gen), [], share):
            found.update(batch)
    return [tokenizer(found[i], add_special_tokens=False)["input_ids"] for i in range(len(requests))]


@pytest.mark.parametrize("positions, share", [("f2+l2", True), ("f2+l2", False), ("l3", True)])
def test_cached_decoding_intervenes_on_each_generated_token_as_the_reference(tmp_path, positions, share):
    runner = runner_for(save(tmp_path / "all", positions, share, "all"))
    assert runner.adapter.reft.intervene_on == "all"
    pictures = images()
    requests = [PromptRequest(q, pictures[k % 2]) for k, q in enumerate(QUESTIONS)] + [
        PromptRequest(QUESTIONS[0], pictures[1])]
    expected = [reference(runner, r.context, r.image, positions, share) for r in requests]
    tokenizer = runner.tokenizer
    cut = [t[:t.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in t else t for t in expected]
    as_text = [tokenizer(tokenizer.decode(t, skip_special_tokens=True), add_special_tokens=False)["input_ids"]
               for t in cut]
    assert all(as_text), "nothing generated: the comparison would say nothing"
    for batch_size in (1, 3):
        for shared in (False, True):  # transformers' generate, and the shared image prefix with our decoder
            assert generated(runner, requests, batch_size, shared) == as_text, (batch_size, shared)
    prompt_only = runner_for(save(tmp_path / "prompt", positions, share, "prompt"))
    assert generated(prompt_only, requests, 3, False) != as_text  # the generated tokens' interventions matter


def test_setting_is_recorded_read_and_checked(tmp_path):
    folder = save(tmp_path / "a", "l3", True, "all")
    assert json.loads((folder / META_FILE).read_text()) == {"positions": "l3", "share_weights": True,
                                                            "intervene_on": "all"}
    prompt = save(tmp_path / "b", "l3", True, "prompt")
    assert "intervene_on" not in json.loads((prompt / META_FILE).read_text())  # pyreft's default: files unchanged
    assert runner_for(prompt).adapter.reft.intervene_on == "prompt"
    (folder / META_FILE).write_text(json.dumps({"positions": "l3", "intervene_on": "everywhere"}))
    with pytest.raises(AdapterError, match="intervene_on='everywhere': use one of prompt, all"):
        runner_for(folder)
    with pytest.raises(ValueError, match="intervene_on='sometimes'"):
        ReftSection(rank=4, positions="l3", intervene_on="sometimes")


def test_training_forward_intervenes_on_the_answer_tokens(tmp_path):
    """Trained as evaluated: in a forward over prompt + answer, the answer's positions join the last group."""
    runner = runner_for(save(tmp_path / "all", "f1+l2", True, "all"))
    inputs, lengths = runner.inputs(QUESTIONS[:2], images(), continuations=[" green", " two shapes"])
    locations = runner.adapter.reft.locations(inputs["attention_mask"], lengths)
    width = inputs["input_ids"].shape[1]
    totals = inputs["attention_mask"].sum(1).tolist()
    expected = []
    for b, (n, total) in enumerate(zip(lengths, totals)):
        pad = width - total
        expected += [b * width + pad + p for p in [0, n - 2, n - 1, *range(n, total)]]
    assert sorted(locations.flat(-1).tolist()) == expected


def test_trained_with_intervene_on_all_and_saved_so(tmp_path):
    """`train --intervene-on all`: the recipe's setting reaches the training adapter, the saved settings and the
    card id; the folder loads with it."""
    from vlm_peft_bench.train.trainer import train

    card = train("reft-r4-all", "cvbench_mini", tmp_path / "out", seed=0, overrides={"intervene_on": "all",
                 "epochs": 1}, limit=8, device="cpu", evaluate_test=False, card_dir=None)
    assert card["id"].startswith("reft-r4-all-onall__")
    assert json.loads((tmp_path / "out" / META_FILE).read_text())["intervene_on"] == "all"
    assert runner_for(tmp_path / "out").adapter.reft.intervene_on == "all"
