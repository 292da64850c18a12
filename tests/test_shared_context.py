"""Shared contexts for log-likelihoods (vlm_peft_bench/shared_context.py) and the cvbench_mini_mc task.

Requests are cvbench_mini_mc's own (lmms-eval builds them from the task: the question, its lettered choices and
the instruction, one request per option letter), on documents spread over the four CV-Bench tasks, plus each
option written out after its letter, so that continuations of several tokens run on the copied cache. For the
bare model and each adapter kind, the shared path (batch 1 and 4) gives the unshared path's log-likelihoods to
TOL and the same greedy flags, and the unshared path gives what a plain forward over context and continuation
gives (`Runner.logits`, the path `vlreft` used before).
"""

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lmms_eval.tasks import TaskManager, get_task_dict
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from tasks.cvbench import utils
from vlm_peft_bench import shared_context
from vlm_peft_bench.adapters.prefix import PrefixModel, save_prefix
from vlm_peft_bench.lmms.vlreft import BadSampleError, VLReft
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.layouts import native_layout
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.scoring.cvbench import METRICS, POST_PROMPT
from vlm_peft_bench.shared_context import ContinuationRequest, image_digest

from .adapter_factory import lora_model, reft_interventions, save_reft

# Largest |shared - unshared| measured, float32 on the CPU, every kind below at batch 1 and 8, on 104 requests (every
# 40th document's letters and written-out options; log-likelihoods from -0.0015 to -86): 2.3e-5, alike on
# transformers 4.45.1 and 5.24 (float32 rounding of sums of that size). TOL leaves a margin of 4.
TOL = 1e-4
TASK = "cvbench_mini_mc"
DOCS = (0, 1, 301, 500, 700)  # Count (4 options, two sources), Relation, Depth, Distance (2 options)
CPU = torch.device("cpu")
KINDS = ["bare", "lora", "lora-merged", "dora", "full", "prefix", "pt-lora", "reft", "reft-unshared-weights"]


@pytest.fixture(scope="module")
def mc_task():
    manager = TaskManager("ERROR", include_path=[str(tasks_dir() / "cvbench")], include_defaults=False)
    return get_task_dict([TASK], manager)[TASK]


def instances(task, docs=DOCS):
    """The task's requests for these documents, built by lmms-eval as in a run."""
    out = []
    for doc_id in docs:
        doc = task.dataset["test"][doc_id]
        out += task.construct_requests(doc_id=doc_id, ctx=task.doc_to_text(doc),
                                       metadata={"task": TASK, "doc_id": doc_id, "repeats": 1, "split": "test"})
    return out


@pytest.fixture(scope="module")
def requests(mc_task):
    """The task's requests as the runner gets them, then each option written out after its letter."""
    out = []
    for request in instances(mc_task):
        context, letter, doc_to_visual, doc_id, *_ = request.args
        doc = mc_task.dataset["test"][doc_id]
        [image] = doc_to_visual(doc)
        out.append(ContinuationRequest(context, letter, image))
        text = doc["choices"]["ABCD".index(letter)]
        out.append(ContinuationRequest(context, f"({letter}) {text}<|im_end|>", image))
    return out


def _lora_config(**kwargs):
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      **kwargs)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """A small adapter of each kind on the tiny model, with weights far from the identity: name -> (folder,
    merge_lora)."""
    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(0)
    lora_model(seed=1).save_pretrained(str(root / "lora"))
    torch.manual_seed(2)
    get_peft_model(load_nanollava("nanollava-tiny").model, _lora_config(use_dora=True)).save_pretrained(
        str(root / "dora"))
    model = load_nanollava("nanollava-tiny").model
    native = native_layout(model)
    torch.manual_seed(3)
    keep = (native.text, native.lm_head, native.projector)
    state = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters() if n.startswith(keep)}
    (root / "full").mkdir()
    save_file(state, str(root / "full" / "model.safetensors"))
    model.config.to_json_file(str(root / "full" / "config.json"))
    torch.manual_seed(4)
    width = 4 * 2 * 128  # layers x (key, value) x hidden size
    save_prefix(root / "prefix", PrefixModel(model, 4, init=0.5 * torch.randn(4, width)))
    save_prefix(root / "pt-lora" / "prefix", PrefixModel(model, 4, init=0.5 * torch.randn(4, width)))
    lora_model(seed=5).save_pretrained(str(root / "pt-lora" / "lora"))
    save_reft(reft_interventions(seed=6), root / "reft", "f3+m3+l3")
    save_reft(reft_interventions(layers=(1, 3, 1, 3, 1, 3), seed=7), root / "reft-unshared-weights", "f3+m3+l3",
              share_weights=False)
    return {"bare": (None, False), "lora": (root / "lora", False), "lora-merged": (root / "lora", True),
            "dora": (root / "dora", False), "full": (root / "full", False), "prefix": (root / "prefix", False),
            "pt-lora": (root / "pt-lora", False), "reft": (root / "reft", False),
            "reft-unshared-weights": (root / "reft-unshared-weights", False)}


def runner_for(kind: str, adapters) -> Runner:
    folder, merge = adapters[kind]
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    attached = attach_adapter(loaded.model, str(folder), merge_lora=merge) if folder else None
    return Runner(attached.model if attached else loaded.model, loaded.processor, CPU, attached)


def scores(runner: Runner, requests, batch_size: int, share: bool) -> list[tuple[float, bool]]:
    found = {}
    with torch.inference_mode():
        for batch in runner.loglikelihoods(requests, batch_size, share):
            found.update(batch)
    assert sorted(found) == list(range(len(requests))), "a request was scored twice or not at all"
    return [found[i] for i in range(len(requests))]


def largest_difference(a, b) -> float:
    return max(abs(x[0] - y[0]) for x, y in zip(a, b))


def plain_forward(runner: Runner, request: ContinuationRequest, prompt_length: str = "context") -> float:
    """The log-likelihood from one forward over context then continuation, through `Runner.logits`; ReFT's
    positions counted on the context (as pyreft counts them on the prompt) or, to show that it matters, on the
    whole row."""
    inputs, lengths = runner.inputs([request.context], [request.image], [request.continuation])
    n_context = lengths[0]
    with torch.inference_mode():
        logits = runner.logits(inputs, lengths if prompt_length == "context" else [inputs["input_ids"].shape[1]])[0]
    target = inputs["input_ids"][0, n_context:]
    return float(torch.log_softmax(logits[n_context - 1:-1], -1).gather(1, target[:, None]).sum())


@pytest.fixture(scope="module")
def bare_reference(requests, adapters):
    return scores(runner_for("bare", adapters), requests, 1, False)


@pytest.mark.parametrize("kind", KINDS)
def test_shared_contexts_score_as_the_unshared_path(kind, adapters, requests, bare_reference):
    runner = runner_for(kind, adapters)
    reference = scores(runner, requests, 1, False)
    for batch_size, share in ((1, True), (4, True), (4, False)):
        got = scores(runner, requests, batch_size, share)
        assert largest_difference(got, reference) < TOL, f"{kind}: batch {batch_size}, shared {share}"
        assert [g for _, g in got] == [g for _, g in reference], f"{kind}: greedy flags, batch {batch_size}"
    assert any(g for _, g in reference) and not all(g for _, g in reference)
    for i in (0, 1, len(requests) - 1):  # the unshared path is a plain forward over the whole row
        assert reference[i][0] == pytest.approx(plain_forward(runner, requests[i]), abs=TOL)
    if kind != "bare":
        assert largest_difference(reference, bare_reference) > 1e-2, f"{kind}: the adapter changes nothing"


def test_reft_positions_are_counted_on_the_context(adapters, requests):
    """ReFT's context cache serves every continuation because its positions are counted on the context, the prompt
    of a log-likelihood request. Counted on the whole row (context and continuation), the last and middle positions
    move and the scores differ far beyond TOL: the equality above would catch positions that depend on the row."""
    runner = runner_for("reft", adapters)
    shared = scores(runner, requests, 4, True)
    for i in (1, 3, len(requests) - 1):  # options written out: several tokens
        assert abs(plain_forward(runner, requests[i], "whole row") - shared[i][0]) > 100 * TOL


def test_contexts_are_grouped_by_pixels_and_prompt_and_results_keep_their_order(monkeypatch, requests, adapters):
    runner = runner_for("bare", adapters)
    first = requests[0]
    same_pixels = first.image.copy()  # another object, the same pixels: shares the context
    other_pixels = first.image.copy()
    other_pixels.putpixel((0, 0), tuple(255 - v for v in other_pixels.getpixel((0, 0))))
    extra = [ContinuationRequest(first.context, "B", same_pixels),
             ContinuationRequest(first.context, "B", other_pixels),
             ContinuationRequest(first.context, "B", None), ContinuationRequest(first.context + " ", "B", same_pixels)]
    mixed = requests + extra
    random.Random(0).shuffle(mixed)
    runs = []
    original = shared_context._run_contexts
    monkeypatch.setattr(shared_context, "_run_contexts", lambda r, batch, cache: runs.append(len(batch)) or
                        original(r, batch, cache))
    shared = scores(runner, mixed, 3, True)
    assert sum(runs) == len(DOCS) + 3  # the changed pixel, no image and another prompt are contexts of their own
    unshared = scores(runner, mixed, 3, False)
    assert sum(runs) == len(DOCS) + 3, "the unshared path ran shared contexts"
    assert largest_difference(shared, unshared) < TOL
    assert [g for _, g in shared] == [g for _, g in unshared]


def test_image_digest_reads_pixels_mode_and_size(requests):
    image = requests[0].image
    assert image_digest(image) == image_digest(image.copy())
    assert image_digest(image) != image_digest(image.convert("RGBA"))
    assert image_digest(image) != image_digest(image.resize((image.width, image.height + 1)))
    changed = image.copy()
    changed.putpixel((5, 5), (1, 2, 3) if image.getpixel((5, 5)) != (1, 2, 3) else (4, 5, 6))
    assert image_digest(image) != image_digest(changed)
    assert image_digest(None) is None


def vlreft(tmp_path, share: str, mc_task) -> VLReft:
    model = VLReft(pretrained="nanollava-tiny", device="cpu", dtype="float32", batch_size=4, share_context=share,
                   answer_log=str(tmp_path))
    model.task_dict = {TASK: {"test": mc_task.dataset["test"]}}
    return model


def test_vlreft_share_context_argument(tmp_path, mc_task, monkeypatch):
    reqs = instances(mc_task)
    runs = []
    original = shared_context._run_contexts
    monkeypatch.setattr(shared_context, "_run_contexts", lambda r, batch, cache: runs.append(len(batch)) or
                        original(r, batch, cache))
    on, off = vlreft(tmp_path, "true", mc_task), vlreft(tmp_path, "false", mc_task)
    shared = on.loglikelihood(reqs)
    assert sum(runs) == len(DOCS)
    unshared = off.loglikelihood(instances(mc_task))
    assert sum(runs) == len(DOCS)
    assert largest_difference(shared, unshared) < TOL and [g for _, g in shared] == [g for _, g in unshared]
    assert on.answer_log.identity["share_context"] is True and off.answer_log.identity["share_context"] is False
    assert on.answer_log.fingerprint != off.answer_log.fingerprint


def test_a_bad_request_stops_before_any_model_work(tmp_path, mc_task):
    model = vlreft(tmp_path, "true", mc_task)
    reqs = instances(mc_task, DOCS[:2])
    context, _, visual, doc_id, task, split = reqs[-1].args
    reqs[-1].arguments = (context, "", visual, doc_id, task, split)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran before the requests were checked")

    model.runner.inputs = must_not_run
    with pytest.raises(BadSampleError, match=rf"task {TASK}, doc {DOCS[1]}: the continuation '' has no tokens"):
        model.loglikelihood(reqs)


def test_the_chosen_letter_is_the_greedy_answer_when_that_is_a_letter(mc_task, adapters):
    """The continuations are the option letters right after the assistant turn opens: where greedy generation
    answers with a bare letter, the most likely option is that letter."""
    runner = runner_for("bare", adapters)
    docs = range(0, 800, 40)
    reqs = instances(mc_task, docs)
    found = {}
    with torch.inference_mode():
        for batch in runner.loglikelihoods([ContinuationRequest(r.args[0], r.args[1], r.args[2](
                mc_task.dataset["test"][r.doc_id])[0]) for r in reqs], 8):
            found.update(batch)
    compared = 0
    for doc_id in docs:
        doc = mc_task.dataset["test"][doc_id]
        options = [found[i] for i, r in enumerate(reqs) if r.doc_id == doc_id]
        chosen = utils.process_results_mc(doc, options)["accuracy"]["parsed"]
        context = mc_task.doc_to_text(doc)
        image = mc_task.doc_to_visual(doc)[0]
        with torch.inference_mode():
            inputs = runner.inputs([context], [image])
            [answer] = runner.generate(*inputs, {"max_new_tokens": 3}, ["<|im_end|>"])
        if answer.strip() in utils.doc_to_choice(doc):
            compared += 1
            assert chosen == answer.strip(), f"doc {doc_id}: generated {answer!r}, most likely option {chosen}"
    assert compared >= 10, f"only {compared} of {len(docs)} answers were a bare letter"


def test_process_results_reads_pairs_and_their_text(mc_task):
    doc = mc_task.dataset["test"][0]  # four options, the answer is (D)
    record = utils.process_results_mc(doc, [(-3.0, False), "(-2.5, False)", [-9.0, False], "(-0.25, True)"])
    record = record["cvbench_combined"]
    assert (record["parsed"], record["correct"], record["rule"]) == ("D", True, utils.MC_RULE_ID)
    assert record["loglikelihoods"] == [-3.0, -2.5, -9.0, -0.25]
    tie = utils.process_results_mc(doc, [(-1.0, False), (-0.5, True), (-0.5, True), (-2.0, False)])
    assert tie["accuracy"]["parsed"] == "B" and not tie["accuracy"]["correct"]  # the first of equals
    with pytest.raises(ValueError, match="3 log-likelihoods for 4 choices"):
        utils.process_results_mc(doc, [(-1.0, False)] * 3)
    with pytest.raises(ValueError, match="not a .log-likelihood, is greedy. pair"):
        utils.process_results_mc(doc, ["nonsense"] * 4)


@pytest.mark.slow
def test_lmms_eval_scores_are_the_same_with_sharing_on_and_off(tmp_path):
    def run(share: str) -> tuple[dict, dict]:
        out = tmp_path / share
        cmd = [str(Path(sys.executable).parent / "lmms_eval"), "--model", "vlreft", "--model_args",
               f"pretrained=nanollava-tiny,share_context={share}", "--tasks", TASK, "--batch_size", "4",
               "--limit", "16", "--output_path", str(out), "--log_samples"]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        [results] = out.glob("nanollava-tiny/*_results.json")
        [samples] = out.glob(f"nanollava-tiny/*_samples_{TASK}.jsonl")
        lines = [json.loads(line) for line in samples.read_text().splitlines()]
        records = {line["doc_id"]: line["accuracy"] for line in lines}
        return json.loads(results.read_text())["results"][TASK], records

    (on, on_records), (off, off_records) = run("true"), run("false")
    assert len(on_records) == 16 and on_records.keys() == off_records.keys()
    metrics = [k for k in on if k.endswith(",none") and "stderr" not in k]
    assert "cvbench_combined,none" in metrics
    for key in metrics:
        assert on[key] == off[key] or (math.isnan(on[key]) and math.isnan(off[key])), key
    for doc_id, record in on_records.items():
        assert record["parsed"] == off_records[doc_id]["parsed"]
        assert max(abs(a - b) for a, b in zip(record["loglikelihoods"], off_records[doc_id]["loglikelihoods"])) < TOL


def test_the_task_asks_cvbench_mini_questions_and_reports_cvbench_metrics(mc_task):
    doc = mc_task.dataset["test"][0]
    assert mc_task.doc_to_text(doc) == doc["prompt"] + POST_PROMPT  # the generation task's own prompt
    assert [c["metric"] for c in mc_task.config.metric_list] == [m.name for m in METRICS]
    assert list(mc_task.aggregation()) == [m.name for m in METRICS]
    assert len(mc_task.test_docs()) == 800
    assert [len(mc_task.construct_requests(doc_id=i, ctx="", metadata={"task": TASK, "doc_id": i, "repeats": 1,
                                                                        "split": "test"})) for i in (0, 700)] == [4, 2]
