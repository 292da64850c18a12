"""`lmms_eval`: lmms-eval's own command line, with this package's tasks visible and quick pre-flight checks.

    lmms_eval --model vlreft --model_args pretrained=nanollava-tiny --tasks cvbench_mini --output_path out

Same flags as `lmms-eval`. Our task folder is added to `--include_path` (a path given by the user is kept
too). Before anything heavy starts, unknown task names are reported with the closest known names.
Other subcommands (`lmms_eval tasks`, `lmms_eval models`, ...) go to lmms-eval unchanged.

Resume: with `--model vlreft` and `--output_path OUT`, every finished answer goes to an answer log under
`OUT/vlreft_answers/` as soon as its batch ends; running the same command again after a crash or a kill
reads the answers already there and generates only the rest (see `vlm_peft_bench/lmms/answer_log.py`).
`--no_resume` (ours) turns this off.

Exit status: 0 only when every evaluation finished and its results file was written (lmms-eval's own command
logs a failed evaluation and still exits 0). An expected failure (an unusable adapter, model, dataset or answer
log, an unknown task) prints `lmms_eval: <reason>` on stderr and exits with status 2; any other error prints its
traceback and exits non-zero.

Several processes: `torchrun --nproc_per_node N -m vlm_peft_bench.lmms.cli ...` keeps all of the above (plain
`-m lmms_eval` shards the same way but adds neither our tasks, nor resume, nor the provenance block).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path

from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.lmms.answer_log import Answer, RunSettings, failure_list, read_failures, set_run_settings
from vlm_peft_bench.lmms.caption_vqa_metrics import per_item_scores
from vlm_peft_bench.methods.table import method_name
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench.provenance import SCHEMA_VERSION
from vlm_peft_bench.scoring import spice_status

SUBCOMMANDS = {"tasks", "models", "ui", "serve", "power", "version", "tui", "mcp"}
ANSWER_LOG_FOLDER = "vlreft_answers"


class EvaluationError(VlmPeftBenchError, RuntimeError):
    """An evaluation that lmms-eval reported as finished but whose results are missing."""


class TaskNameError(VlmPeftBenchError, ValueError):
    """A requested task that neither lmms-eval nor this package knows."""


def _our_task_names() -> set[str]:
    names = set()
    for path in tasks_dir().rglob("*.yaml"):
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith("task:"):
                names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def check_task_names(requested: str, include_paths: list[str]) -> None:
    """Refuse, with the closest known names, a requested task name that is unknown (before models or data load)."""
    from lmms_eval.tasks import TaskManager

    manager = TaskManager("ERROR", include_path=include_paths)
    known = set(manager.all_tasks)
    missing = []
    for name in requested.split(","):
        name = name.strip()
        if not name or name in known or Path(name).exists() or any(ch in name for ch in "*?["):
            continue
        missing.append(name)
    if missing:
        lines = []
        for name in missing:
            close = difflib.get_close_matches(name, sorted(known), n=4, cutoff=0.6)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            lines.append(f"  {name}{hint}")
        ours = ", ".join(sorted(_our_task_names()))
        raise TaskNameError(
            "unknown task(s):\n" + "\n".join(lines)
            + f"\nvlm-peft-bench tasks: {ours}. List all with `lmms_eval --tasks list`."
        )


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        from lmms_eval.cli.dispatch import main as lmms_main

        lmms_main()
        return
    if argv and argv[0] == "eval":
        argv = argv[1:]
    resume = "--no_resume" not in argv
    sys.argv = [sys.argv[0], *(a for a in argv if a != "--no_resume")]
    from lmms_eval.__main__ import parse_eval_args

    _, args = parse_eval_args()
    include = [str(tasks_dir())]
    if args.include_path:
        include.append(args.include_path)
    args.include_path = include
    try:
        if args.tasks and args.tasks not in ("list", "list_groups", "list_tags", "list_subtasks"):
            check_task_names(args.tasks, include)
        with tempfile.TemporaryDirectory(prefix="vlm-peft-bench-") as scratch:
            ours = resume and args.model == "vlreft" and args.output_path
            folder = Path(args.output_path) / ANSWER_LOG_FOLDER if ours else None
            failures_file = Path(scratch) / "failures.jsonl"
            set_run_settings(RunSettings(folder, f"seed={args.seed}" if folder else "", failures_file))
            evaluate(args, failures_file)
    except VlmPeftBenchError as err:  # an expected failure: its message, no traceback, status 2
        print(f"lmms_eval: {err}", file=sys.stderr)
        sys.exit(2)


class _EvaluationFailed(BaseException):
    """Carries an evaluation's exception through lmms-eval's `cli_evaluate`, which catches every `Exception`,
    logs it and carries on (status 0, nothing written); like KeyboardInterrupt, a BaseException goes through."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def evaluate(args: argparse.Namespace, failures_file: Path) -> None:
    """lmms-eval's `cli_evaluate(args)` (its logging, --config lists, wandb, result tables), except that an
    evaluation that fails raises its exception here, and that each finished one is checked and, for `vlreft`, gets
    our block in its results file (see `finish`)."""
    import lmms_eval.__main__ as lmms_main

    evaluate_one = lmms_main.cli_evaluate_single  # cli_evaluate calls it by this name, once per evaluation

    def checked(run_args: argparse.Namespace):
        try:
            failures_file.unlink(missing_ok=True)  # this evaluation's model records its own failures afresh
            results, samples = evaluate_one(run_args)
            finish(run_args, results, read_failures(failures_file), samples)
        except Exception as err:
            raise _EvaluationFailed(err) from None
        return results, samples

    failed = None
    lmms_main.cli_evaluate_single = checked
    try:
        lmms_main.cli_evaluate(args)
    except _EvaluationFailed as carried:
        failed = carried.error
    finally:
        lmms_main.cli_evaluate_single = evaluate_one
    if failed is not None:  # raised here, outside the handler, so that its own traceback and cause are shown
        raise failed


def finish(args: argparse.Namespace, results: dict | None, failures: list[Answer], samples: dict | None = None) -> None:
    """After one evaluation, on the process that writes the results (lmms-eval's rank 0): check that they exist
    (and, with an output path, were written) and, for `vlreft`, add our block to the results file. With several
    processes the failure list is rank 0's own shard's (each rank's answer log holds the rest). `samples` (lmms-eval's
    logged samples, with --log_samples) identify the caption records whose per-image SPICE scores are recorded."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if results is None:
        raise EvaluationError("lmms-eval returned no results (see its log above)")
    if args.output_path:
        path = results_file(Path(args.output_path), results)
        if args.model == "vlreft":
            add_provenance(path, args.model_args or "", failures, caption_per_item(samples))


def results_file(output_path: Path, results: dict) -> Path:
    """The results file lmms-eval 0.7.3 wrote for `results`: `<output_path>/<model_name_sanitized>/<date, ':' as
    '-'>_results.json` (EvaluationTracker.save_results_aggregated, which adds `model_name_sanitized` to `results`
    and, when it cannot write, only logs a warning)."""
    name, date = results.get("model_name_sanitized"), results.get("date")
    path = output_path / str(name) / f"{str(date).replace(':', '-')}_results.json"
    if name is None or date is None or not path.is_file():
        raise EvaluationError(f"lmms-eval did not write its results file {path} (see its warnings above)")
    return path


def add_provenance(path: Path, model_args: str, failures: list[Answer], per_item: dict | None = None) -> None:
    """Add a `vlm_peft_bench` block (versions, prompt template, model hashes, the adapter's hash and method, the
    evaluated model's parameter counts, whether shared image prefixes and contexts were on, per-sample failures of
    its tasks, and `per_item`: {task: {metric: {item id: score}}} for corpus metrics that are a mean of per-item
    scores, i.e. SPICE) to one results file."""
    from lmms_eval.utils import simple_parse_args_string

    # imported here: they import torch, which lmms-eval's own subcommands and the task-name check never need
    from vlm_peft_bench.methods.attach import adapter_hash, resolve_adapter
    from vlm_peft_bench.nanollava.provenance import model_provenance
    from vlm_peft_bench.runner import as_bool

    parsed = simple_parse_args_string(model_args) if model_args else {}
    pretrained = str(parsed.get("pretrained", "nanollava-tiny"))
    block = model_provenance(pretrained, parsed.get("system_prompt"))
    folder = None
    if parsed.get("adapter"):
        folder = resolve_adapter(str(parsed["adapter"]))
        block["adapter"] = {"path": str(parsed["adapter"]), "sha256": adapter_hash(folder),
                            "method": method_name(folder), "merge_lora": parsed.get("merge_lora", False)}
        if parsed.get("alpha") not in (None, ""):
            block["adapter"]["alpha"] = float(parsed["alpha"])
    block["params"] = evaluated_params(pretrained, folder)
    block["share_context"] = as_bool(parsed.get("share_context", True))  # shared image prefixes and contexts
    data = json.loads(path.read_text())
    data["vlm_peft_bench"] = {"schema_version": SCHEMA_VERSION, **block, **_notes(data), **_failures(data, failures)}
    tasks = set(data.get("results", {}))
    if any(task in tasks for task in per_item or {}):
        data["vlm_peft_bench"]["per_item"] = {task: v for task, v in per_item.items() if task in tasks}
    # replaced whole: a kill or a full disk now must not truncate a finished run's results
    write_files(path.parent, {path.name: json.dumps(data, indent=2, ensure_ascii=False).encode()})


def evaluated_params(pretrained: str, adapter: Path | None) -> dict:
    """{trainable, total, fraction} of the evaluated base (+ adapter), as `vlm-peft-bench params` counts them (the
    leaderboard reads them here); {"unknown": reason} when they cannot be counted (the run's results stand)."""
    from vlm_peft_bench.methods.params import account  # imports torch: see add_provenance

    try:
        report = account(pretrained, adapter=None if adapter is None else str(adapter))
    except Exception as err:  # any failure to count leaves the counts unknown, with the reason
        return {"unknown": f"{type(err).__name__}: {err}"}
    counts = {"trainable": int(report["trainable"]), "total": int(report["total"]),
              "fraction": float(report["fraction"])}
    if report.get("derived"):  # steering vectors: computed from the model's states, not trained
        counts["derived"] = int(report["derived"])
    return counts


def _notes(data: dict) -> dict:
    """{"notes": {...}} with the full reason when a caption task reports SPICE as unavailable; else {}."""
    results = data.get("results", {})
    if not any(isinstance(scores.get("SPICE,none"), str) for scores in results.values()):
        return {}
    return {"notes": {"SPICE": spice_status() or "SPICE unavailable: see the run's log"}}


def caption_per_item(samples: dict | None) -> dict:
    """{task: {"SPICE": {item id: F}}} for the caption tasks among lmms-eval's logged samples whose scoring in this
    process kept per-image SPICE scores (none without --log_samples, or when SPICE did not run)."""
    out = {}
    for task, logged in (samples or {}).items():
        records = [s.get("SPICE") for s in logged if isinstance(s, dict)]
        if records and all(isinstance(r, dict) and "prediction" in r for r in records):
            scores = per_item_scores(records)
            if scores:
                out[task] = scores
    return out


def _failures(data: dict, failures: list[Answer]) -> dict:
    """{"failures": [...]}: the per-sample failures (unanswerable prompts, empty generations) of `data`'s tasks."""
    tasks = set(data.get("results", {}))
    listed = [f for f in failure_list(failures) if f["task"] in tasks]
    return {"failures": listed} if listed else {}


if __name__ == "__main__":
    main()
