"""Shared image prefixes for generation (vlm_peft_bench/shared_prefix.py): greedy answers identical to the unshared
path (transformers' `generate` over each whole prompt) for the bare model and every adapter kind, prefixes run once
per image, ReFT prefixes shared only where the intervened prefix positions agree, caches dropped after their last
question, and `vlreft`'s share_context argument.

Requests are lmms-eval's own, built from `vqa_v2_mini` (three questions per image) and `cvbench_mini`.
"""

import json
import os
import subprocess
import sys
import weakref
from collections import Counter
from pathlib import Path

import pytest
import torch
from lmms_eval.tasks import TaskManager, get_task_dict

from vlm_peft_bench import shared_prefix
from vlm_peft_bench.lmms.vlreft import VLReft
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.kv_cache import cache_layers
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.shared_prefix import PromptRequest

from . import test_shared_context
from .adapter_factory import reft_interventions, save_reft
from .test_shared_context import KINDS, runner_for

adapters = test_shared_context.adapters  # the fixture: a small adapter of each kind

VQA, CVBENCH = "vqa_v2_mini", "cvbench_mini"
VQA_DOCS = tuple(range(12))  # four images, three questions each
CV_DOCS = (0, 1, 301, 700)


def lmms_task(name: str):
    folder = "vqa_v2" if name.startswith("vqa") else "cvbench"
    manager = TaskManager("ERROR", include_path=[str(tasks_dir() / folder)], include_defaults=False)
    return get_task_dict([name], manager)[name]


@pytest.fixture(scope="module")
def tasks():
    return {VQA: lmms_task(VQA), CVBENCH: lmms_task(CVBENCH)}


def instances(task, name: str, docs):
    return [task.construct_requests(doc_id=d, ctx=task.doc_to_text(task.dataset["test"][d]),
                                    metadata={"task": name, "doc_id": d, "repeats": 1, "split": "test"})
            for d in docs]


def prompt_requests(task, name: str, docs, second_question: bool = False) -> tuple[list[PromptRequest], dict]:
    """The task's requests for these documents; with `second_question`, each image is also asked the next
    document's question (CV-Bench has one question per image: this shares its prefixes)."""
    out = []
    built = instances(task, name, docs)
    for k, instance in enumerate(built):
        context, gen, doc_to_visual, doc_id, *_ = instance.args
        [image] = doc_to_visual(task.dataset["test"][doc_id])
        out.append(PromptRequest(context, image))
        if second_question:
            out.append(PromptRequest(built[(k + 1) % len(built)].args[0], image))
    return out, dict(gen)


@pytest.fixture(scope="module")
def slices(tasks):
    return [prompt_requests(tasks[VQA], VQA, VQA_DOCS), prompt_requests(tasks[CVBENCH], CVBENCH, CV_DOCS, True)]


def answers(runner: Runner, requests, gen: dict, batch_size: int, share: bool) -> list[str]:
    found = {}
    with torch.inference_mode():
        for batch in runner.generate_requests(requests, batch_size, gen, list(gen["until"]), share):
            found.update(batch)
    assert sorted(found) == list(range(len(requests))), "a request was answered twice or not at all"
    return [found[i] for i in range(len(requests))]


def count_prefixes(monkeypatch) -> list[int]:
    runs: list[int] = []
    original = shared_prefix.run_contexts
    monkeypatch.setattr(shared_prefix, "run_contexts", lambda runner, encoded, *a, **k: runs.append(len(encoded)) or
                        original(runner, encoded, *a, **k))
    return runs


@pytest.mark.parametrize("kind", KINDS)
def test_shared_prefixes_answer_as_the_unshared_path(kind, adapters, slices, monkeypatch):
    runner = runner_for(kind, adapters)
    runs = count_prefixes(monkeypatch)
    for requests, gen in slices:
        before = len(runs)
        reference = answers(runner, requests, gen, 1, False)
        assert len(runs) == before, "the unshared path ran a shared prefix"
        for batch_size in (1, 4):
            assert answers(runner, requests, gen, batch_size, True) == reference, f"{kind}, batch {batch_size}"
            assert answers(runner, requests, gen, batch_size, False) == reference, f"{kind}, unshared {batch_size}"
        assert any(a.strip() for a in reference)
    assert runs, "nothing was shared"


def test_each_image_is_run_once(adapters, slices, monkeypatch):
    requests, gen = slices[0]
    runner = runner_for("bare", adapters)
    runs = count_prefixes(monkeypatch)
    answers(runner, requests, gen, 4, True)
    assert sum(runs) == len(VQA_DOCS) // 3  # three questions per image
    same_pixels = PromptRequest(requests[0].context + " Twice?", requests[0].image.copy())
    other = requests[0].image.copy()
    other.putpixel((0, 0), tuple(255 - v for v in other.getpixel((0, 0))))
    runs.clear()
    answers(runner, requests + [same_pixels, PromptRequest(requests[0].context, other),
                                PromptRequest(requests[1].context, other), PromptRequest(requests[0].context, None),
                                PromptRequest(requests[1].context, None), PromptRequest(requests[0].context,
                                                                                        requests[-1].image)], gen, 4,
             True)
    # the changed pixel is an image of its own, no image is not shared, the last image's questions are four now
    assert sum(runs) == len(VQA_DOCS) // 3 + 1
    runs.clear()
    answers(runner, requests[:1] + requests[3:4], gen, 4, True)
    assert runs == [], "an image asked one question was run as a shared prefix"


# What decides the intervened positions inside the prefix, from a prompt's token length n: nothing (every prefix
# alike), the middle group's start, the last group's start, or nothing again when the last group covers the prompt.
PREFIX_KEYS = {"f3+l3": lambda n: None, "f3+m3+l3": lambda n: (n - 3) // 2, "l60": lambda n: n - 60,
               "l500": lambda n: None}


@pytest.mark.parametrize("positions", list(PREFIX_KEYS))
def test_reft_prefixes_are_shared_only_where_the_intervened_positions_agree(positions, slices, tmp_path,
                                                                           monkeypatch):
    """First and last positions of a prompt whose question is longer than the last group leave every prefix
    alike; middle positions (inside the image tokens) move with the prompt's length, and last positions reaching
    back into the prefix too: those rows share a prefix only with rows whose positions there are the same."""
    save_reft(reft_interventions(seed=11), tmp_path / "reft", positions)
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    attached = attach_adapter(loaded.model, str(tmp_path / "reft"))
    runner = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    requests, gen = slices[0]
    runs = count_prefixes(monkeypatch)
    got = answers(runner, requests, gen, 4, True)
    encoded = runner.encode([r.context for r in requests], [r.image for r in requests])
    keys = Counter((r.image.tobytes(), PREFIX_KEYS[positions](len(ids))) for r, ids in zip(requests, encoded))
    assert sum(runs) == sum(1 for n in keys.values() if n > 1)  # a prefix of one question is not shared
    if positions in ("f3+m3+l3", "l60"):
        assert len(keys) > len(VQA_DOCS) // 3, "the case shows nothing"
    assert got == answers(runner, requests, gen, 1, False)


def test_reft_locations_of_a_prompt_split_in_two_are_those_of_the_whole(adapters):
    reft = runner_for("reft", adapters).adapter.reft
    lengths = [40, 33, 9]
    mask = torch.zeros(3, 40, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, 40 - n:] = 1
    whole = reft.locations(mask, lengths)
    splits = [25, 20, 4]  # the first part of each prompt, then the rest
    first = torch.zeros(3, 25, dtype=torch.long)
    second = torch.zeros(3, 40 - 4, dtype=torch.long)
    for row, (n, s) in enumerate(zip(lengths, splits)):
        first[row, 25 - s:] = 1
        second[row, 36 - (n - s):] = 1
    head = reft.locations(first, lengths, [0, 0, 0])
    tail = reft.locations(second, lengths, splits)
    for group in range(-1, 3):
        expected = {(int(r), int(c) - (40 - lengths[r])) for r, c in zip(*whole.where(group))}
        found = {(int(r), int(c) - (25 - splits[r])) for r, c in zip(*head.where(group))}
        found |= {(int(r), int(c) - (36 - (lengths[r] - splits[r])) + splits[r]) for r, c in zip(*tail.where(group))}
        assert found == expected, f"group {group}"


def test_a_prefix_cache_is_dropped_after_its_last_question(adapters, slices, monkeypatch):
    requests, gen = slices[0]
    runner = runner_for("bare", adapters)
    caches: list[weakref.ref] = []
    alive_at_next_batch: list[bool] = []
    original = shared_prefix.run_contexts

    def tracked(*args, **kwargs):
        alive_at_next_batch.extend(ref() is not None for ref in caches)
        context = original(*args, **kwargs)
        caches.append(weakref.ref(cache_layers(context.cache)[0][0]))  # the first layer's keys
        return context

    monkeypatch.setattr(shared_prefix, "run_contexts", tracked)
    answers(runner, requests, gen, 2, True)  # two images per batch: two batches
    assert len(caches) == 2 and alive_at_next_batch == [False]
    assert caches[-1]() is None


def test_sampling_beams_and_images_absent_are_not_shared(adapters, slices, monkeypatch):
    requests, gen = slices[0]
    runner = runner_for("bare", adapters)
    runs = count_prefixes(monkeypatch)
    answers(runner, requests[:3], {**gen, "num_beams": 2}, 3, True)
    answers(runner, [PromptRequest(r.context, None) for r in requests[:3]], gen, 3, True)
    torch.manual_seed(0)
    answers(runner, requests[:3], {**gen, "do_sample": True, "temperature": 0.7}, 3, True)
    assert runs == []


def test_vlreft_generates_the_same_with_sharing_on_and_off(tmp_path, tasks, monkeypatch):
    models = {}
    for share in ("true", "false"):
        model = VLReft(pretrained="nanollava-tiny", device="cpu", dtype="float32", batch_size=4, share_context=share,
                       answer_log=str(tmp_path / share))
        model.task_dict = {name: {"test": task.dataset["test"]} for name, task in tasks.items()}
        models[share] = model
    runs = count_prefixes(monkeypatch)
    reqs = instances(tasks[VQA], VQA, VQA_DOCS) + instances(tasks[CVBENCH], CVBENCH, CV_DOCS)
    shared = models["true"].generate_until(reqs)
    assert sum(runs) == len(VQA_DOCS) // 3  # CV-Bench asks one question per image: nothing to share
    assert models["false"].generate_until(reqs) == shared
    assert sum(runs) == len(VQA_DOCS) // 3, "share_context=false shared a prefix"
    assert len(models["true"].answer_log.answers) == len(reqs)


@pytest.mark.slow
def test_every_vqa_v2_mini_item_and_a_cvbench_slice_at_batch_1_and_8(adapters, tasks):
    runner = runner_for("bare", adapters)
    for name, docs in ((VQA, range(300)), (CVBENCH, range(0, 800, 20))):
        requests, gen = prompt_requests(tasks[name], name, docs, second_question=name == CVBENCH)
        for batch_size in (1, 8):
            assert answers(runner, requests, gen, batch_size, True) == answers(runner, requests, gen, batch_size,
                                                                               False), f"{name}, batch {batch_size}"


@pytest.mark.slow
def test_lmms_eval_scores_are_the_same_with_sharing_on_and_off(tmp_path):
    def run(share: str) -> dict:
        out = tmp_path / share
        cmd = [str(Path(sys.executable).parent / "lmms_eval"), "--model", "vlreft", "--model_args",
               f"pretrained=nanollava-tiny,share_context={share}", "--tasks", f"{VQA},cvbench_mini_mc",
               "--batch_size", "8", "--limit", "60", "--output_path", str(out)]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        [results] = out.glob("nanollava-tiny/*_results.json")
        return json.loads(results.read_text())

    on, off = run("true"), run("false")
    assert on["results"][VQA] == off["results"][VQA]
    for key, value in on["results"]["cvbench_mini_mc"].items():
        other = off["results"]["cvbench_mini_mc"][key]
        assert value == other or (value != value and other != other), key
    assert "share_context=true" in on["config"]["model_args"]
    assert (on["vlm_peft_bench"]["share_context"], off["vlm_peft_bench"]["share_context"]) == (True, False)
