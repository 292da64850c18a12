"""lmms-eval results files (and their sample logs) -> one `TaskResult` per (file, task).

Reads `<stamp>_results.json` as lmms-eval 0.7.3 writes it, with the `vlm_peft_bench` provenance block our
`lmms_eval` wrapper adds (base and adapter hashes, prompt template, versions); files from plain lmms-eval are
accepted, grouped by the `pretrained` name, with hashes unknown. Sample logs `<stamp>_samples_<task>.jsonl`
(or `.jsonl.gz`) beside a results file are used for intervals and for a hash of the evaluated inputs.

A file that cannot be read, or whose layout is not the one described in `layout.py`, raises `BadFile` naming
the file and every field at fault; nothing is guessed. What a partial or bad sample log does is described in
`samples.py`: it never costs the results file its scores.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from vlm_peft_bench.leaderboard import LeaderboardError
from vlm_peft_bench.leaderboard.layout import RERUN_LMMS, UPGRADE, is_version_problem, results_problems
from vlm_peft_bench.leaderboard.problems import BadFile, Problem
from vlm_peft_bench.leaderboard.readfile import read_json
from vlm_peft_bench.leaderboard.samples import read_samples
from vlm_peft_bench.paths import display_path


@dataclass
class TaskResult:
    file: str  # the results file, as shown (relative to the repository when inside it)
    task: str
    scores: dict  # metric -> float, or a string note (SPICE unavailable), or None (NaN)
    base: dict  # name, hash (None without provenance)
    prompt_template: str | None
    system_instruction: str | None
    adapter: dict | None  # path, sha256 (None without provenance)
    fingerprint: dict  # the task settings that must agree for results to be comparable
    date: str
    seeds: dict
    versions: dict
    task_hash: str | None
    n: int | None
    model_args: str
    samples_file: str | None = None
    samples: list[dict] | None = field(default=None, repr=False)
    inputs_sha256: str | None = None
    notes: dict = field(default_factory=dict)
    samples_note: str | None = None  # why the sample log gives no interval (incomplete, or left out as bad)
    samples_problem: Problem | None = None  # a bad sample log, for the builder to refuse or leave out
    provenance: bool = True  # False: no vlm_peft_bench block (plain lmms-eval): hashes unknown
    params: dict | None = None  # the block's parameter counts ({trainable, total, fraction} or {unknown}), if any
    adapter_method: str | None = None  # the adapter's method as the block records it, if it does
    per_item: dict = field(default_factory=dict)  # metric -> {item id: score} (the block's per-image SPICE)


def find_results(dirs: list[Path]) -> list[Path]:
    files: set[Path] = set()
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise LeaderboardError(f"results folder {d} does not exist")
        files.update([d] if d.is_file() else d.rglob("*_results.json"))
    return sorted(files, key=lambda p: display_path(p))


def parse_model_args(text: str) -> dict[str, str]:
    if isinstance(text, dict):  # lm-evaluation-harness style: already parsed
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for part in (text or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _date(data: dict) -> str:
    stamp = str(data.get("date") or "")
    if len(stamp) == 15 and stamp[8] == "_" and stamp.replace("_", "").isdigit():
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    return stamp or "unknown"


def _portable(value):
    """Absolute paths (data files on one machine) reduced to their last two parts; recursively."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return "/".join(Path(value).parts[-2:])
    return value


def _prompt_kwargs(config: dict) -> dict:
    kwargs = config.get("lmms_eval_specific_kwargs") or {}
    resolved = {k: v for k, v in kwargs.items() if k != "default"}
    return resolved or dict(kwargs.get("default") or {})


def _obj(data: dict, key: str) -> dict:
    """data[key] when it is an object, else {} (an absent or null optional section)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _score(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if math.isnan(float(value)) else float(value)
    return value if isinstance(value, str) and value != "N/A" else None


def fingerprint(task: str, data: dict) -> dict:
    """What defines the evaluation of `task` in a results file, beyond the model: version, split, items, prompt
    and generation settings, dataset. Two results are comparable only when these agree."""
    config = _obj(data, "configs").get(task) or {}
    run = _obj(data, "config")
    n_samples = _obj(data, "n-samples").get(task) or {}
    return {
        "task": task,
        "version": _obj(data, "versions").get(task),
        "split": config.get("test_split"),
        "n": n_samples.get("effective"),
        "limit": run.get("limit"),
        "offset": run.get("offset") or 0,
        "num_fewshot": _obj(data, "n-shot").get(task, config.get("num_fewshot")),
        "task_hash": _obj(data, "task_hashes").get(task),
        "prompt_kwargs": _prompt_kwargs(config),
        "generation_kwargs": _portable(config.get("generation_kwargs") or {}),
        "dataset": _portable({"path": config.get("dataset_path"), "name": config.get("dataset_name"),
                              "kwargs": config.get("dataset_kwargs")}),
    }


def samples_path(results_file: Path, task: str) -> Path | None:
    stem = results_file.name[: -len("_results.json")]
    for suffix in (".jsonl", ".jsonl.gz"):
        path = results_file.with_name(f"{stem}_samples_{task}{suffix}")
        if path.is_file():
            return path
    return None


def inputs_hash(samples: list[dict]) -> str:
    """sha256 over every item's id, prompt text and target: which items were evaluated, asked how."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(json.dumps([s.get("doc_id"), s.get("input"), s.get("target")], sort_keys=True,
                                 ensure_ascii=False, default=str).encode())
    return digest.hexdigest()


def load(path: Path) -> dict:
    """The parsed results file, checked against the layout the reader expects; `BadFile` otherwise."""
    shown = display_path(path)
    data = read_json(path, shown, RERUN_LMMS)
    problems = results_problems(data)
    if problems:
        raise BadFile(shown, "; ".join(problems), UPGRADE if any(map(is_version_problem, problems)) else RERUN_LMMS)
    return data


def attach_samples(result: TaskResult, results_file: Path) -> None:
    """Read the task's sample log, if there is one, into `result` (see samples.py for what each outcome does)."""
    sample_file = samples_path(Path(results_file), result.task)
    if sample_file is None:
        return
    result.samples_file = display_path(sample_file)
    try:
        log = read_samples(sample_file, result.samples_file, result.n)
    except BadFile as err:
        result.samples_problem = err.problem
        return
    if log.incomplete:
        result.samples_note = f"sample log incomplete ({log.incomplete})"
        return
    result.samples = log.records
    result.inputs_sha256 = inputs_hash(log.records)


def read_results(path: Path, with_samples: bool = True) -> list[TaskResult]:
    """One TaskResult per task in an lmms-eval results file (groups and tasks without scores skipped);
    `BadFile` for a file that cannot be read or is laid out otherwise (see layout.py)."""
    data = load(path)
    run = data["config"]
    model_args = run.get("model_args") or ""
    args = parse_model_args(model_args)
    model_args = model_args if isinstance(model_args, str) else ",".join(f"{k}={v}" for k, v in args.items())
    block = data.get("vlm_peft_bench") or {}
    name = data.get("model_name") if isinstance(data.get("model_name"), str) else None
    base = {"name": block.get("pretrained") or args.get("pretrained") or name or "unknown",
            "hash": block.get("model_hash")}
    adapter = None
    if block.get("adapter"):
        adapter = {"path": block["adapter"].get("path"), "sha256": block["adapter"].get("sha256")}
    elif args.get("adapter"):
        adapter = {"path": args["adapter"], "sha256": None}
    versions = block.get("versions") or {"lmms-eval": data.get("lmms_eval_version")}
    seeds = {k: run.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed") if k in run}
    system = args.get("system_prompt") or data.get("system_instruction")
    out = []
    for task in sorted(data["results"]):
        if task not in data["configs"]:
            continue  # a group's summary line
        scores = {k.split(",")[0]: _score(v) for k, v in data["results"][task].items()
                  if "," in k and "_stderr" not in k}
        result = TaskResult(
            file=display_path(path), task=task, scores=scores, base=base,
            prompt_template=block.get("prompt_template"), system_instruction=system, adapter=adapter,
            fingerprint=fingerprint(task, data), date=_date(data), seeds=seeds, versions=versions,
            task_hash=_obj(data, "task_hashes").get(task), n=(_obj(data, "n-samples").get(task) or {}).get("effective"),
            model_args=model_args, notes=dict(block.get("notes") or {}), provenance=bool(block),
            params=block.get("params"), adapter_method=(block.get("adapter") or {}).get("method"),
            per_item=dict((block.get("per_item") or {}).get(task) or {}),
        )
        if with_samples:
            attach_samples(result, Path(path))
        out.append(result)
    return out
