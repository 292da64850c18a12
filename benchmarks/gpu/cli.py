"""The command line of the GPU benchmark (`bash benchmarks/gpu.sh ...`, i.e. `python -m benchmarks.gpu ...`): its
arguments, the run, and the JSON it writes (see the package's docstring for what it measures)."""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks import gpu
from benchmarks.common import REPO, cpu_count, distribution_versions, environment_defaults, quiet
from benchmarks.gpu.adapters import load_recipes, recipe_settings
from benchmarks.gpu.flops import flop_model, roofline
from benchmarks.gpu.measure import agreement, config_entry, evaluate_ratios, library_status, run_all
from benchmarks.gpu.model import build_base, make_requests
from benchmarks.gpu.peaks import peaks
from benchmarks.gpu.report import table
from benchmarks.gpu.runners import CONFIGS, Setup
from benchmarks.gpu.sharing import measure_sharing


def versions() -> dict:
    """Installed versions (a library can be installed and still fail to import: see `libraries`)."""
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, **distribution_versions(("lmms_eval", "peft", "pyreft", "pyvene"))}


def default_out(size: str, device_name: str) -> Path:
    """Full-size results go to benchmarks/results/gpu-<device>.json; toy runs (smoke tests) to a temp file."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower() or "device"
    if size == "toy":
        return Path(tempfile.gettempdir()) / f"vlm-peft-bench-gpu-toy-{slug}.json"
    return REPO / "benchmarks" / "results" / f"gpu-{slug}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=gpu.__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--size", choices=("full", "toy"), default="full",
                        help="full: nanoLLaVA's architecture (~1.05 B parameters); toy: the tiny checkpoint's sizes")
    parser.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--items", type=int, default=16, help="requests per timed pass (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed passes per configuration")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens every row generates (fixed)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of: " + ", ".join(c.name for c in CONFIGS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 TFLOP/s (overrides)")
    parser.add_argument("--peak-gbps", type=float, default=None, help="the card's memory GB/s (overrides)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="stop adding repeats when the next would end past this many seconds since start")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on cpu)")
    parser.add_argument("--share-images", type=int, default=8,
                        help="images of the sharing workload (0 skips it); each asked --questions-per-image questions")
    parser.add_argument("--questions-per-image", type=int, default=5, help="VQAv2 has 5.3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 items, 1 repeat, 16 new tokens")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.repeats, args.new_tokens = min(args.items, 8), 1, min(args.new_tokens, 16)
    if args.items < 1 or args.repeats < 1 or args.new_tokens < 2:
        parser.error("--items and --repeats must be at least 1, --new-tokens at least 2")
    return args


def chosen_configs(spec: str | None) -> list[str]:
    """The configurations `--configs` names (all when None), in CONFIGS' order."""
    names = [c.name for c in CONFIGS]
    if not spec:
        return names
    chosen = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise SystemExit(f"benchmarks/gpu.sh: unknown configurations {unknown}; known: {names}")
    return [n for n in names if n in chosen]


def sharing_section(setup: Setup, fm: dict, args: argparse.Namespace, peak_tflops: float | None) -> dict | None:
    """The sharing measurements (`sharing.py`), or {"error": ...} when they fail (the rest of the run stands)."""
    if args.share_images < 1:
        return None
    try:
        return measure_sharing(setup, fm, args.share_images, args.questions_per_image, 8, args.repeats, peak_tflops)
    except Exception:
        return {"error": traceback.format_exc()}


def main(argv: list[str] | None = None) -> dict:
    started = time.perf_counter()
    environment_defaults()
    args = parse_args(argv)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.sh: no CUDA device here; for the CPU smoke path use --device cpu --size toy")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    quiet()
    names = chosen_configs(args.configs)
    libs = library_status(sorted({n for c in CONFIGS if c.name in names for n in c.needs}))
    recipes = load_recipes()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    init_start = time.perf_counter()
    base, processor, config = build_base(args.size, device, dtype, args.seed)
    sync()
    init_s = time.perf_counter() - init_start
    requests = make_requests(args.items, config.vision_config.image_size, args.seed)
    with tempfile.TemporaryDirectory(prefix="vlreft-gpu-bench-") as tmp:
        setup = Setup(base, processor, config, device, dtype, sync, args.new_tokens, args.seed, Path(tmp), recipes)
        measured, repeats = run_all(setup, names, libs, requests, args.repeats, args.budget_s, started)
        fm = flop_model(base, config)
        peak = peaks(device, args.peak_tflops, args.peak_gbps)
        shared = sharing_section(setup, fm, args, peak["tflops"])
    tokenizer = processor.tokenizer
    ordinary = set(range(len(tokenizer))) - set(tokenizer.all_special_ids)
    memory_note = (None if device.type == "cuda" else "CPU run: CUDA memory statistics only exist on a GPU")
    result = {
        "command": " ".join(["benchmarks/gpu.sh", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"platform": platform.platform(), "device": str(device), "device_name": peak["device_name"],
                    "cuda_memory_gib": (torch.cuda.get_device_properties(device).total_memory / 1024 ** 3
                                        if device.type == "cuda" else None),
                    "cpus": cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": versions(),
        "libraries": libs,
        "settings": {"size": args.size, "architecture": "nanoLLaVA (Qwen2-0.5B + SigLIP so400m - last layer, "
                     "mlp2x_gelu)" if args.size == "full" else "toy (nanollava-tiny's dimensions)",
                     "weights": f"random (seed {args.seed}), initialised on the device",
                     "dtype": str(dtype).removeprefix("torch."), "items": args.items, "repeats": args.repeats,
                     "repeats_done": repeats.done, "stopped_for_budget": repeats.stopped_for_budget,
                     "budget_s": args.budget_s, "new_tokens": args.new_tokens,
                     "generation": "greedy; special-token and out-of-tokenizer lm_head rows zeroed, so every row "
                                   "generates exactly new_tokens tokens",
                     "tokenizer": "nanollava-tiny (all ids < vocab_size)",
                     "inputs": "seeded random RGB images at the vision tower's size + cvbench_mini-style prompts",
                     **recipe_settings(recipes),
                     "order": "interleaved, rotated each repeat; medians"},
        "model": {"params_total": fm["params_total"], "params": fm["params"], "image_tokens": fm["n_patches"],
                  "init_s": init_s},
        "configs": {n: config_entry(measured[n], args.items, args.new_tokens, ordinary) for n in measured},
        "memory_note": memory_note,
        "ratios": evaluate_ratios(measured),
        "greedy_identical": agreement(measured, args.items),
        "peak": peak,
        "throughput_vs_peak": roofline(measured, fm, args.items, args.new_tokens, base.dtype.itemsize, peak),
        "sharing": shared,
        "wall_s_total": time.perf_counter() - started,
    }
    out = args.out or default_out(args.size, peak["device_name"] if device.type == "cuda" else "cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return result
