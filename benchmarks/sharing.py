"""Shared image prefixes and shared contexts, each measured against the unshared path in the same run, with
identical answers, on the CPU tiny model (part of `python -m benchmarks.run`; alone: `python -m benchmarks.sharing`).

- vqa_v2_mini (300 questions, 3 per image): `vlreft.generate_until` with share_context on and off, at batch 1 and
  8, interleaved repeats, medians. A profile of one shared pass splits the time into shared work S per image (the
  prefix: vision tower and decoder over the image tokens) and per-question work U (the question's tokens and the
  decoding); with q questions per image the most sharing can give is q(S+U)/(S+qU), reported next to the ratio.
- cvbench_mini_mc, the 4-option documents (Count): `vlreft.loglikelihood`, on and off, batch 8.
- Memory: 64 questions about 8 images, in a subprocess per setting, peak RSS above the loaded model (VmHWM reset
  after loading), and the key/value caches sharing keeps: the prefix caches of one batch and the row copies each
  question runs on, with their sizes at full nanoLLaVA size (24 layers x 2 x 1024 values per token, bf16).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

common.environment_defaults()

TARGETS = {"vqa": 1.5, "mc4": 2.0}  # throughput shared / unshared, at least
FULL_SIZE_BYTES_PER_TOKEN = 24 * 2 * 1024 * 2  # nanoLLaVA: layers x (key, value) x hidden x bf16 bytes
FULL_SIZE_PREFIX_TOKENS = 729 + 5  # image tokens and the markup before them ("<|im_start|>user\n")


def task_requests(name: str, limit: int | None = None, keep=None) -> tuple[object, list]:
    """The task's own Instances (lmms-eval builds them) and the task; `keep` filters documents."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    from vlm_peft_bench.paths import tasks_dir

    manager = TaskManager("ERROR", include_path=[str(tasks_dir())])
    task = get_task_dict([name], manager)[name]
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    instances = [i for i in task.instances if keep is None or keep(task.dataset["test"][i.doc_id])]
    return task, instances


def vlreft_model(task_dicts: dict):
    import vlm_peft_bench.lmms.vlreft as vlreft_module
    from vlm_peft_bench.lmms.vlreft import VLReft

    vlreft_module.tqdm = common.silent_tqdm
    model = VLReft(pretrained="nanollava-tiny", device="cpu", dtype="float32")
    model.task_dict.update(task_dicts)
    return model


def timed(call, requests) -> tuple[float, list]:
    reqs = common.fresh(requests)
    start = time.perf_counter()
    out = call(reqs)
    return time.perf_counter() - start, out


def side_by_side(model, method: str, requests, settings: dict[str, tuple[bool, int]], repeats: int) -> dict:
    """Median seconds and outputs per setting (share_context, batch size), passes interleaved and rotated."""
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    outputs: dict[str, list] = {}

    def call(name):
        model.share_context, model.batch_size_per_gpu = settings[name]
        return timed(getattr(model, method), requests)

    for name in settings:  # warm-up
        call(name)
    for rep in range(repeats):
        for name in common.rotated(list(settings), rep):
            s, out = call(name)
            seconds[name].append(s)
            outputs.setdefault(name, out)
    return {"seconds": {n: statistics.median(v) for n, v in seconds.items()}, "runs_s": seconds,
            "outputs": outputs}


def profile_shared_work(model, requests, batch_size: int) -> dict:
    """Seconds in prefixes (S, per image) and in questions (U, per question) during one shared pass."""
    from vlm_peft_bench import shared_prefix

    spent = {"prefix": 0.0, "question": 0.0, "images": 0, "questions": 0}
    originals = shared_prefix.run_contexts, shared_prefix._answer

    def prefixes(runner, encoded, *args, **kwargs):
        start = time.perf_counter()
        out = originals[0](runner, encoded, *args, **kwargs)
        spent["prefix"] += time.perf_counter() - start
        spent["images"] += len(encoded)
        return out

    def questions(runner, context, chunk, settings):
        start = time.perf_counter()
        out = originals[1](runner, context, chunk, settings)
        spent["question"] += time.perf_counter() - start
        spent["questions"] += len(chunk)
        return out

    shared_prefix.run_contexts, shared_prefix._answer = prefixes, questions
    try:
        model.share_context, model.batch_size_per_gpu = True, batch_size
        total, _ = timed(model.generate_until, requests)
    finally:
        shared_prefix.run_contexts, shared_prefix._answer = originals
    s, u = spent["prefix"] / spent["images"], spent["question"] / spent["questions"]
    q = spent["questions"] / spent["images"]
    return {"S_per_image_s": s, "U_per_question_s": u, "questions_per_image": q, "bound": q * (s + u) / (s + q * u),
            "profiled_pass_s": total, "in_prefixes_and_questions_s": spent["prefix"] + spent["question"]}


def vqa_section(repeats: int) -> dict:
    task, requests = task_requests("vqa_v2_mini")
    model = vlreft_model({"vqa_v2_mini": task.dataset})
    out: dict = {"task": "vqa_v2_mini", "questions": len(requests), "repeats": repeats, "by_batch_size": {}}
    for batch_size in (1, 8):
        settings = {"shared": (True, batch_size), "unshared": (False, batch_size)}
        got = side_by_side(model, "generate_until", requests, settings, repeats)
        ratio = got["seconds"]["unshared"] / got["seconds"]["shared"]
        profile = profile_shared_work(model, requests, batch_size)
        out["by_batch_size"][str(batch_size)] = {
            "seconds": got["seconds"], "runs_s": got["runs_s"], "ratio": ratio, "target": TARGETS["vqa"],
            "met": ratio >= TARGETS["vqa"], "profile": profile,
            "mismatches": common.text_mismatches(got["outputs"]["shared"], got["outputs"]["unshared"]),
        }
    return out


def mc_section(repeats: int, docs: int) -> dict:
    task, requests = task_requests("cvbench_mini_mc", keep=lambda doc: len(doc["choices"]) == 4)
    chosen = sorted({r.doc_id for r in requests})[:docs]
    requests = [r for r in requests if r.doc_id in set(chosen)]
    model = vlreft_model({"cvbench_mini_mc": task.dataset})
    got = side_by_side(model, "loglikelihood", requests, {"shared": (True, 8), "unshared": (False, 8)}, repeats)
    ratio = got["seconds"]["unshared"] / got["seconds"]["shared"]
    shared, unshared = got["outputs"]["shared"], got["outputs"]["unshared"]
    return {"task": "cvbench_mini_mc (4-option documents)", "documents": len(chosen), "requests": len(requests),
            "batch_size": 8, "repeats": repeats, "seconds": got["seconds"], "runs_s": got["runs_s"], "ratio": ratio,
            "target": TARGETS["mc4"], "met": ratio >= TARGETS["mc4"],
            "largest_loglikelihood_difference": max(abs(a[0] - b[0]) for a, b in zip(shared, unshared)),
            "greedy_flags_identical": [a[1] for a in shared] == [b[1] for b in unshared]}


def memory_workload() -> list:
    """64 questions about 8 images: vqa_v2_mini's first 8 images, each asked 8 of its first 64 questions."""
    from vlm_peft_bench.shared_prefix import PromptRequest

    task, requests = task_requests("vqa_v2_mini", limit=64)
    data = task.dataset["test"]
    images = [task.doc_to_visual(data[d])[0] for d in range(0, 24, 3)]
    return [PromptRequest(r.args[0], images[k // 8]) for k, r in enumerate(requests)], dict(requests[0].args[1])


def memory_worker(share: bool) -> dict:
    """Subprocess: load, reset the peak, answer the 64-question workload at batch 8; peak and cache sizes."""
    import gc

    import torch

    from vlm_peft_bench import shared_prefix
    from vlm_peft_bench.nanollava.kv_cache import cache_bytes, cache_layers
    from vlm_peft_bench.nanollava.loading import load_nanollava
    from vlm_peft_bench.runner import Runner

    common.quiet()
    requests, gen = memory_workload()
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")
    runner = Runner(loaded.model, loaded.processor, torch.device("cpu"))
    kept: list[dict] = []
    alive: list = []
    original = shared_prefix.run_contexts

    def tracked(runner_, encoded, *args, **kwargs):
        still = sum(ref() is not None for ref in alive)
        context = original(runner_, encoded, *args, **kwargs)
        kept.append({"prefixes": len(encoded), "prefix_tokens": [len(e) for e in encoded],
                     "bytes": cache_bytes(context.cache), "earlier_caches_alive": still})
        alive.append(weakref.ref(cache_layers(context.cache)[0][0]))
        return context

    shared_prefix.run_contexts = tracked
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = common.status_mib("VmRSS")
    with torch.inference_mode():
        for _ in runner.generate_requests(requests, 8, gen, list(gen["until"]), share):
            pass
    peak = common.status_mib("VmHWM")
    return {"share": share, "questions": len(requests), "images": 8, "batch_size": 8,
            "peak_above_loaded_model_mib": peak - before, "prefix_batches": kept,
            "caches_alive_after": sum(ref() is not None for ref in alive)}


def memory_section() -> dict:
    out = {}
    for share in (True, False):
        cmd = [sys.executable, "-m", "benchmarks.sharing", "--_memory", "on" if share else "off"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"memory worker failed:\n{proc.stderr[-3000:]}")
        out["on" if share else "off"] = json.loads(proc.stdout.strip().splitlines()[-1])
    batches = out["on"]["prefix_batches"]
    per_token = batches[0]["bytes"] / sum(batches[0]["prefix_tokens"]) if batches else None
    out["kept_caches"] = {
        "tiny_bytes_per_prefix_token": per_token,
        "tiny_largest_prefix_batch_bytes": max((b["bytes"] for b in batches), default=0),
        "full_size_bytes_per_image": FULL_SIZE_BYTES_PER_TOKEN * FULL_SIZE_PREFIX_TOKENS,
        "full_size_batch8_held_bytes": 2 * 8 * FULL_SIZE_BYTES_PER_TOKEN * FULL_SIZE_PREFIX_TOKENS,
        "note": "at most one batch of prefix caches is alive, with the copies of its rows that the current chunk of "
                "questions runs on (freed after the chunk): twice a batch of prefixes at most",
    }
    return out


def measure(repeats: int = 5, mc_docs: int = 60, memory: bool = True) -> dict:
    started = time.perf_counter()
    common.quiet()
    out = {"vqa": vqa_section(repeats), "mc4": mc_section(repeats, mc_docs)}
    if memory:
        out["memory"] = memory_section()
    out["wall_s"] = time.perf_counter() - started
    return out


def table(result: dict) -> str:
    vqa, mc = result["vqa"], result["mc4"]
    lines = ["| sharing (side by side, identical answers) | shared / unshared throughput | bound | target | met |",
             "|---|---:|---:|---:|---|"]
    for batch_size, r in vqa["by_batch_size"].items():
        p = r["profile"]
        lines.append(f"| {vqa['task']}, {vqa['questions']} questions, batch {batch_size} "
                     f"(S {p['S_per_image_s'] * 1e3:.1f} ms/image, U {p['U_per_question_s'] * 1e3:.1f} ms/question; "
                     f"{len(r['mismatches'])} answers differ) | {r['ratio']:.3f} | {p['bound']:.3f} | "
                     f">= {r['target']} | {'yes' if r['met'] else 'NO'} |")
    lines.append(f"| {mc['task']}, {mc['requests']} requests, batch 8 (max log-likelihood difference "
                 f"{mc['largest_loglikelihood_difference']:.1e}; greedy flags identical: "
                 f"{'yes' if mc['greedy_flags_identical'] else 'NO'}) | {mc['ratio']:.3f} | 4 | >= {mc['target']} | "
                 f"{'yes' if mc['met'] else 'NO'} |")
    if "memory" in result:
        m, k = result["memory"], result["memory"]["kept_caches"]
        lines += ["", f"64 questions about 8 images, batch 8: peak above the loaded model "
                      f"{m['on']['peak_above_loaded_model_mib']:.1f} MiB shared, "
                      f"{m['off']['peak_above_loaded_model_mib']:.1f} MiB unshared; prefix caches kept "
                      f"{k['tiny_largest_prefix_batch_bytes'] / 2**20:.2f} MiB per batch of 8 images (tiny), "
                      f"{k['full_size_bytes_per_image'] / 2**20:.0f} MiB per image at full size (bf16), at most "
                      f"{k['full_size_batch8_held_bytes'] / 2**30:.2f} GiB held at batch 8; caches alive after the "
                      f"run: {m['on']['caches_alive_after']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mc-docs", type=int, default=60, help="4-option cvbench_mini_mc documents")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--_memory", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args._memory:
        print(json.dumps(memory_worker(args._memory == "on")))
        return {}
    result = measure(args.repeats, args.mc_docs, not args.no_memory)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
