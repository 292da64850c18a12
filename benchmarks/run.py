"""Generation throughput, overhead ratios, greedy agreement and peak memory, in one run on one machine.

Configurations, all on the embedded `nanollava-tiny` checkpoint and the same cvbench_mini requests (lmms-eval
Instances built by the task itself, passed to each model's `generate_until`):

    vlreft_bs1        our `vlreft`, no adapter, batch size 1
    llava_hf_bs1      lmms-eval's own `llava_hf` model (batch size 1: it supports no other), on a temporary copy of
                      the checkpoint folder with the processor files it needs (the committed assets are untouched)
    reft_bs1          `vlreft` + the zoo's LoReFT adapter on all layers (reft-r4-all)
    lora_unmerged_bs1 `vlreft` + the zoo's LoRA (lora-r8), unmerged
    lora_merged_bs1   the same LoRA, merged into the base
    vlreft_bs8        `vlreft`, no adapter, batch size 8

Timed passes are interleaved (every repeat runs every configuration, in a rotated order) and medians are taken, so
that load from other processes weighs on every side alike. Only ratios of medians measured side by side are
targets; absolute times are recorded for context. Peak memory: each configuration loads and generates again in its
own subprocess, which reports its peak RSS (ru_maxrss); `imports_only` is that of a subprocess that only imports.
Caption scoring (5,000 captions x 5 references) runs `benchmarks/caption_scoring.py` in a subprocess. Shared image
prefixes and shared contexts are measured against the unshared path by `benchmarks/sharing.py` (its docstring).

    .venv/bin/python -m benchmarks.run [--items 16] [--repeats 7] [--captions 5000] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (`python benchmarks/run.py`) as well as with -m
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    RATIOS,
    cpu_count,
    distribution_versions,
    environment_defaults,
    fresh,
    quiet,
    rotated,
    silent_tqdm,
    status_mib,
    target_met,
    target_text,
    text_mismatches,
    write_llava_hf_files,
)

environment_defaults()  # before lmms-eval, transformers or datasets load (the memory workers import this file too)

TASK = "cvbench_mini"
ZOO = REPO / "adapters_zoo" / "weights"
REFT = ZOO / "reft-r4-all__nanollava-tiny__cvbench_mini"
LORA = ZOO / "lora-r8__nanollava-tiny__cvbench_mini"
CONFIGS = {
    "vlreft_bs1": ("vlreft", {"batch_size": 1}),
    "llava_hf_bs1": ("llava_hf", {"batch_size": 1}),
    "reft_bs1": ("vlreft", {"batch_size": 1, "adapter": str(REFT)}),
    "lora_unmerged_bs1": ("vlreft", {"batch_size": 1, "adapter": str(LORA)}),
    "lora_merged_bs1": ("vlreft", {"batch_size": 1, "adapter": str(LORA), "merge_lora": True}),
    "vlreft_bs8": ("vlreft", {"batch_size": 8}),
}


def llava_hf_folder(dest: Path) -> Path:
    """A copy of nanollava-tiny that transformers' AutoProcessor loads as a LlavaProcessor: our ChatML prompt as
    the chat template, SigLIP's image processor at the model's size (mean = std = 0.5, bicubic), and `<image>`
    expanded to one token per patch (64; "default" only tells the processor not to count a CLS token)."""
    import shutil

    from vlm_peft_bench.nanollava.loading import TINY_DIR

    src = TINY_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    config = json.loads((src / "config.json").read_text())
    vision = config["vision_config"]
    write_llava_hf_files(dest, vision.get("image_size", 64), vision.get("patch_size", 8))
    return dest


def build_model(name: str, hf_dir: Path | None):
    import lmms_eval.models.simple.llava_hf as llava_hf_module

    import vlm_peft_bench.lmms.vlreft as vlreft_module

    vlreft_module.tqdm = llava_hf_module.tqdm = silent_tqdm  # progress bars would swamp the table
    kind, args = CONFIGS[name]
    if kind == "llava_hf":
        from lmms_eval.models.simple.llava_hf import LlavaHf

        return LlavaHf(pretrained=str(hf_dir), device="cpu", device_map="cpu", dtype="float32", **args)
    from vlm_peft_bench.lmms.vlreft import VLReft

    return VLReft(pretrained="nanollava-tiny", device="cpu", dtype="float32", **args)


def build_requests(n: int):
    """The task's own generate_until Instances for its first n test documents, and the task object."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    from vlm_peft_bench.paths import tasks_dir

    manager = TaskManager("ERROR", include_path=[str(tasks_dir())])
    task = get_task_dict([TASK], manager)[TASK]
    task.build_all_requests(limit=n, rank=0, world_size=1)
    return task, list(task.instances)


def attach(lm, task):
    lm.task_dict[TASK] = task.dataset
    return lm


def timed_pass(lm, requests) -> tuple[float, float, list[str]]:
    """(wall seconds, this process's CPU seconds, texts) of one generate_until over the requests."""
    reqs = fresh(requests)
    cpu, start = time.process_time(), time.perf_counter()
    texts = lm.generate_until(reqs)
    return time.perf_counter() - start, time.process_time() - cpu, texts


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(name: str, items: int, hf_dir: str | None) -> None:
    """Subprocess: load one configuration, generate once; print peak RSS as JSON on the last line.

    Imports (torch, transformers, lmms-eval) take ~1 GiB and would hide the model, so the peak is reset after them
    (Linux: `5` into /proc/self/clear_refs resets VmHWM) and the peak above that point is reported as well."""
    quiet()
    task, requests = build_requests(items)
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = status_mib("VmRSS")
    if name != "imports_only":
        lm = attach(build_model(name, Path(hf_dir) if hf_dir else None), task)
        timed_pass(lm, requests)
    peak = status_mib("VmHWM") if reset else None
    print(json.dumps({"config": name, "peak_rss_mib": peak if peak is not None else peak_rss_mib(),
                      "peak_over_imports_mib": None if peak is None or before is None else peak - before}))


def measure_memory(names: list[str], items: int, hf_dir: Path, threads: int) -> dict:
    out = {}
    for name in ["imports_only", *names]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", name, "--items", str(items),
               "--_hf_dir", str(hf_dir), "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"memory worker {name} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def caption_scoring(n: int, out: Path, spice: bool) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "caption_scoring.py"), "--n", str(n), "--out", str(out),
           *(["--spice"] if spice else [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "captions": n}
    result = json.loads(out.read_text())
    return {
        "captions": result["captions"], "references_per_caption": result["references_per_caption"],
        "seconds": result["seconds"], "ratio_all_to_meteor": result["ratio_all_to_meteor"],
        "target_ratio": result["target_ratio"], "peak_rss_mib": result["peak_rss_mib"],
        "wall_s_total": time.perf_counter() - start, "json": str(out), "spice": result.get("spice"),
    }


def versions() -> dict:
    return {"python": platform.python_version(),
            **distribution_versions(("torch", "transformers", "lmms_eval", "peft", "pyreft", "vlm-peft-bench"))}


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": cpu, "cpus": cpus, "torch_threads": torch.get_num_threads(),
            "load_average_at_start": load}


def evaluate_ratios(medians: dict) -> dict:
    out = {}
    for key, (num, den, what, _, _) in RATIOS.items():
        # throughput num / den == time den / time num (the same items): one formula for both readings
        ratio = medians[den]["seconds"] / medians[num]["seconds"]
        fastest = min(medians[den]["runs_s"]) / min(medians[num]["runs_s"])  # best passes: noise only adds time
        # the same ratio on CPU seconds (less sensitive to other processes' load; includes torch's spinning threads)
        cpu = medians[den]["cpu_seconds"] / medians[num]["cpu_seconds"]
        out[key] = {"what": what, "ratio": ratio, "ratio_cpu_time": cpu, "ratio_best_pass": fastest,
                    "target": target_text(key), "met": target_met(key, ratio)}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16, help="cvbench_mini test items per timed pass")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed passes per configuration")
    parser.add_argument("--captions", type=int, default=5000, help="captions for the caption-scoring benchmark")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 items, 1 repeat, 50 captions, no memory subprocesses")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory subprocesses")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared machine, threads descheduled by other processes "
                             "make passes up to 10x slower at random; 0 keeps torch's default)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "run.json")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_hf_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args._worker:
        worker(args._worker, args.items, args._hf_dir)
        return {}
    if args.quick:
        args.items, args.repeats, args.captions = min(args.items, 4), 1, min(args.captions, 50)
        args.no_memory = True
    quiet()
    started = time.perf_counter()
    names = list(CONFIGS)
    with tempfile.TemporaryDirectory(prefix="vlreft-bench-") as tmp:
        hf_dir = llava_hf_folder(Path(tmp) / "nanollava-tiny-llava-hf")
        task, requests = build_requests(args.items)
        models = {name: attach(build_model(name, hf_dir), task) for name in names}
        warm = requests[: min(4, len(requests))]
        for name in names:  # warm-up (first-call allocations, lazy imports): not timed
            timed_pass(models[name], warm)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in names}
        texts: dict[str, list[str]] = {}
        for rep in range(args.repeats):
            for name in rotated(names, rep):  # rotate who goes first
                s, c, t = timed_pass(models[name], requests)
                seconds[name].append(s)
                cpu_seconds[name].append(c)
                texts.setdefault(name, t)
                if t != texts[name]:
                    raise SystemExit(f"{name}: greedy predictions changed between repeats")
        n_tokens = {name: sum(len(models["vlreft_bs1"].tokenizer(t, add_special_tokens=False)["input_ids"])
                              for t in texts[name]) for name in names}
        del models
        memory = measure_memory(names, min(args.items, 16), hf_dir, args.threads) if not args.no_memory else {}
    medians = {}
    for name in names:
        med = statistics.median(seconds[name])
        medians[name] = {"seconds": med, "samples_per_s": args.items / med, "runs_s": seconds[name],
                         "cpu_seconds": statistics.median(cpu_seconds[name]), "cpu_runs_s": cpu_seconds[name],
                         "new_tokens": n_tokens[name], "new_tokens_per_s": n_tokens[name] / med,
                         "peak_rss_mib": memory.get(name, {}).get("peak_rss_mib"),
                         "peak_over_imports_mib": memory.get(name, {}).get("peak_over_imports_mib")}
    ratios = evaluate_ratios(medians)
    agree = {
        "vlreft_vs_llava_hf": text_mismatches(texts["vlreft_bs1"], texts["llava_hf_bs1"]),
        "vlreft_bs8_vs_bs1": text_mismatches(texts["vlreft_bs8"], texts["vlreft_bs1"]),
        "lora_merged_vs_unmerged": text_mismatches(texts["lora_merged_bs1"], texts["lora_unmerged_bs1"]),
    }
    captions_json = args.out.parent / "caption_scoring_from_run.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    captions = caption_scoring(args.captions, captions_json, spice=not args.quick)
    from benchmarks import sharing

    shared = sharing.measure(args.repeats, 8 if args.quick else 60, memory=not args.no_memory)
    result = {
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *(argv or sys.argv[1:])]),
        "machine": machine(), "versions": versions(),
        "settings": {"task": TASK, "items": args.items, "repeats": args.repeats, "checkpoint": "nanollava-tiny",
                     "dtype": "float32", "device": "cpu", "torch_threads": args.threads,
                     "generation": "greedy, max_new_tokens 16 (task's)",
                     "order": "interleaved, rotated each repeat; medians"},
        "configs": medians,
        "ratios": ratios,
        "greedy_identical": {k: {"mismatches": len(v), "of": args.items, "items": v[:20]} for k, v in agree.items()},
        "examples": {name: texts[name][:3] for name in names},
        "memory_imports_only_mib": memory.get("imports_only", {}).get("peak_rss_mib"),
        "caption_scoring": captions,
        "sharing": shared,
        "wall_s_total": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print()
    print(sharing.table(shared))
    print(f"wrote {args.out}")
    return result


def table(result: dict) -> str:
    s = result["settings"]
    m = result["machine"]
    lines = [f"cvbench_mini, {s['items']} items x {s['repeats']} interleaved repeats, nanollava-tiny fp32 on "
             f"{m['cpus']} CPUs ({m['cpu']}), load at start {m['load_average_at_start']}", "",
             "| config | samples/s (median) | new tokens/s | peak RSS MiB | peak above imports MiB |",
             "|---|---:|---:|---:|---:|"]
    base = result["memory_imports_only_mib"]
    for name, c in result["configs"].items():
        rss = "-" if c["peak_rss_mib"] is None else f"{c['peak_rss_mib']:.0f}"
        extra = "-" if c["peak_over_imports_mib"] is None else f"{c['peak_over_imports_mib']:+.1f}"
        lines.append(f"| {name} | {c['samples_per_s']:.2f} | {c['new_tokens_per_s']:.1f} | {rss} | {extra} |")
    if base:
        lines.append(f"| (imports only, no model) | | | {base:.0f} | |")
    lines += ["", "| ratio (side by side) | median wall | median CPU | best pass wall | target | met (median wall) |",
              "|---|---:|---:|---:|---:|---|"]
    for r in result["ratios"].values():
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['what']} | {r['ratio']:.3f} | {r['ratio_cpu_time']:.3f} | {r['ratio_best_pass']:.3f} | "
                     f"{r['target'] or '-'} | {met} |")
    c = result["caption_scoring"]
    if "error" not in c:
        lines.append(f"| caption scoring, {c['captions']} captions: all but SPICE / METEOR alone | "
                     f"{c['ratio_all_to_meteor']:.3f} | - | - | <= {c['target_ratio']} | "
                     f"{'yes' if c['ratio_all_to_meteor'] <= c['target_ratio'] else 'NO'} |")
    lines.append("")
    for key, g in result["greedy_identical"].items():
        lines.append(f"greedy predictions {key}: {g['of'] - g['mismatches']}/{g['of']} identical")
    if "error" not in c:
        lines.append(f"caption scoring: METEOR alone {c['seconds']['meteor_alone']:.1f} s, all but SPICE "
                     f"{c['seconds']['all_but_spice']:.1f} s; peak RSS python {c['peak_rss_mib']['python']:.0f} MiB, "
                     f"Java {c['peak_rss_mib']['children']:.0f} MiB")
    else:
        lines.append(f"caption scoring failed: {c['error'][-300:]}")
    for name, r in (c.get("spice") or {}).items():
        if name == "error":
            lines.append(f"SPICE not timed: {r}")
        else:
            lines.append(f"SPICE on {name} ({r['captions']} captions): cold {r['cold']['wall_s']:.1f} s, warm "
                         f"cache {r['warm']['wall_s']:.1f} s; all other metrics {r['all_but_spice']['wall_s']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
