"""The measurements: build every configuration, warm each up, time interleaved passes; then each configuration's
JSON entry, the ratios of run.py and the greedy agreement between configurations."""

from __future__ import annotations

import importlib
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RATIOS, rotated, target_met, target_text, text_mismatches
from benchmarks.gpu.model import Request
from benchmarks.gpu.runners import CONFIGS, Config, PassResult, Setup, build_runner

AGREEMENT = {  # name: (config, config, compared on)
    "vlreft_vs_llava_hf": ("vlreft_bs1", "llava_hf_bs1", "text"),
    "vlreft_bs8_vs_bs1": ("vlreft_bs8", "vlreft_bs1", "ids"),
    "lora_merged_vs_unmerged": ("lora_merged_bs1", "lora_unmerged_bs1", "ids"),
}


@dataclass
class Measured:
    config: Config
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    build_s: float | None = None
    weights_bytes: int | None = None
    runs_s: list[float] = field(default_factory=list)
    generate_runs_s: list[float] = field(default_factory=list)
    transient_bytes: int | None = None
    first: PassResult | None = None
    changed_between_repeats: bool = False


@dataclass
class Repeats:
    done: int = 0
    stopped_for_budget: bool = False


def library_status(names: list[str]) -> dict[str, dict]:
    """Whether each module imports here, and its distribution's version (an import that raises counts as missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # a broken install is as missing as an absent one
            out[name] = {"available": False, "version": None, "error": f"{type(err).__name__}: {err}"}
            continue
        try:
            found = version(name.split(".")[0])
        except PackageNotFoundError:
            found = None
        out[name] = {"available": True, "version": found, "error": None}
    return out


def _error(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}{at}"


def timed_pass(runner, requests: list[Request], device, sync: Callable[[], None]) -> tuple[float, int | None, Any]:
    """(wall seconds, bytes allocated above the pass's start at its peak (CUDA), result) of one pass."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    sync()
    start = time.perf_counter()
    result = runner.run(requests)
    sync()
    wall = time.perf_counter() - start
    transient = torch.cuda.max_memory_allocated(device) - before if cuda else None
    return wall, transient, result


def run_all(setup: Setup, names: list[str], libraries: dict[str, dict], requests: list[Request], repeats: int,
            budget_s: float, started: float) -> tuple[dict[str, Measured], Repeats]:
    """Build every configuration, warm each up, then the interleaved timed repeats, stopping early when the next
    repeat would end more than `budget_s` seconds after `started` (a time.perf_counter value)."""
    measured = {c.name: Measured(c) for c in CONFIGS if c.name in names}
    runners = {}
    for name, m in measured.items():
        missing = [n for n in m.config.needs if not libraries[n]["available"]]
        if missing:
            m.status, m.reason = "skipped", "; ".join(f"{n} not importable ({libraries[n]['error']})" for n in missing)
            continue
        start = time.perf_counter()
        try:
            runners[name], m.weights_bytes = build_runner(m.config, setup)
        except Exception as err:
            m.status, m.reason = "failed", f"build: {_error(err)}"
        m.build_s = time.perf_counter() - start
    for name, m in measured.items():  # warm-up (first-call allocations, kernel selection): not timed
        if m.status == "ok":
            try:
                timed_pass(runners[name], requests[: max(2, m.config.batch_size)], setup.device, setup.sync)
            except Exception as err:
                m.status, m.reason = "failed", f"warm-up: {_error(err)}"
    live = [n for n in measured if measured[n].status == "ok"]
    done = Repeats()
    for rep in range(repeats):
        rep_start = time.perf_counter()
        for name in rotated(live, rep):
            m = measured[name]
            if m.status != "ok":
                continue
            try:
                wall, transient, result = timed_pass(runners[name], requests, setup.device, setup.sync)
            except Exception as err:
                m.status, m.reason = "failed", f"timed pass: {_error(err)}"
                continue
            m.runs_s.append(wall)
            if result.generate_s is not None:
                m.generate_runs_s.append(result.generate_s)
            if transient is not None:
                m.transient_bytes = max(m.transient_bytes or 0, transient)
            if m.first is None:
                m.first = result
            elif result.texts != m.first.texts:
                m.changed_between_repeats = True
        done.done = rep + 1
        elapsed, per_repeat = time.perf_counter() - started, time.perf_counter() - rep_start
        if rep + 1 < repeats and elapsed + per_repeat > budget_s:
            done.stopped_for_budget = True
            break
    return measured, done


def config_entry(m: Measured, items: int, new_tokens: int, ordinary: set[int]) -> dict:
    """One configuration's JSON: status, medians, throughput, memory, and checks on what it generated (`ordinary`:
    the tokenizer's non-special ids, the only ones the zeroed lm_head rows leave to greedy decoding)."""
    entry: dict[str, Any] = {"status": m.status, "reason": m.reason, "batch_size": m.config.batch_size,
                             "new_tokens_per_item": 1 if m.config.one_token else new_tokens,
                             "build_s": m.build_s}
    mib = 1024 ** 2
    entry["weights_mib"] = None if m.weights_bytes is None else m.weights_bytes / mib
    entry["transient_peak_mib"] = None if m.transient_bytes is None else m.transient_bytes / mib
    entry["peak_mib"] = (None if m.weights_bytes is None or m.transient_bytes is None
                         else (m.weights_bytes + m.transient_bytes) / mib)
    if m.status != "ok" or not m.runs_s:
        return entry
    med = statistics.median(m.runs_s)
    per_item = entry["new_tokens_per_item"]
    ids = m.first.ids
    entry.update(seconds=med, runs_s=m.runs_s, samples_per_s=items / med, new_tokens=items * per_item,
                 new_tokens_per_s=items * per_item / med,
                 generate_s=statistics.median(m.generate_runs_s) if m.generate_runs_s else None,
                 generate_runs_s=m.generate_runs_s or None,
                 every_row_full_length=None if ids is None else all(len(r) == per_item for r in ids),
                 only_ordinary_tokens=None if ids is None else all(t in ordinary for r in ids for t in r),
                 changed_between_repeats=m.changed_between_repeats, examples=m.first.texts[:2])
    return entry


def evaluate_ratios(measured: dict[str, Measured]) -> dict:
    """run.py's ratios (benchmarks/common.py's RATIOS) on wall time, null with the reason where a side did not run."""
    out = {}
    for key, (num, den, what, _, _) in RATIOS.items():
        entry: dict[str, Any] = {"what": what, "ratio": None, "ratio_best_pass": None, "target": target_text(key),
                                 "met": None}
        missing = [f"{c} {measured[c].status}" if c in measured else f"{c} not run"
                   for c in (num, den) if c not in measured or measured[c].status != "ok"]
        if missing:  # the configurations' own entries say why
            entry["reason"] = ", ".join(missing)
        else:  # throughput num / den == time den / time num over the same items
            a, b = measured[num].runs_s, measured[den].runs_s
            entry["ratio"] = statistics.median(b) / statistics.median(a)
            entry["ratio_best_pass"] = min(b) / min(a)
            entry["met"] = target_met(key, entry["ratio"])
        out[key] = entry
    return out


def agreement(measured: dict[str, Measured], items: int) -> dict:
    out = {}
    for key, (a, b, on) in AGREEMENT.items():
        ma, mb = measured.get(a), measured.get(b)
        if not ma or not mb or ma.status != "ok" or mb.status != "ok":
            out[key] = {"mismatches": None, "of": items, "on": on, "reason": f"{a} or {b} did not run"}
            continue
        if on == "text":
            diff = text_mismatches(ma.first.texts, mb.first.texts)
        else:
            diff = [i for i, (x, y) in enumerate(zip(ma.first.ids, mb.first.ids)) if x != y]
        out[key] = {"mismatches": len(diff), "of": items, "on": on, "items": diff[:20]}
    return out
