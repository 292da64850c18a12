"""`lmms_eval`: lmms-eval's own command line, with this package's tasks visible and quick pre-flight checks.

    lmms_eval --model vlreft --model_args pretrained=nanollava-tiny --tasks cvbench_mini --output_path out

Same flags as `lmms-eval`. Our task folder is added to `--include_path` (a path given by the user is kept
too). Before anything heavy starts, unknown task names are reported with the closest known names.
Other subcommands (`lmms_eval tasks`, `lmms_eval models`, ...) go to lmms-eval unchanged.

Resume: with `--model vlreft` and `--output_path OUT`, every finished answer goes to an answer log under
`OUT/vlreft_answers/` as soon as its batch ends; running the same command again after a crash or a kill
reads the answers already there and generates only the rest (see `vlm_peft_bench/lmms/answer_log.py`).
`--no_resume` (ours) turns this off.

Several processes: `torchrun --nproc_per_node N -m vlm_peft_bench.lmms.cli ...` keeps all of the above (plain
`-m lmms_eval` shards the same way but adds neither our tasks, nor resume, nor the provenance block).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from pathlib import Path

from vlm_peft_bench.paths import tasks_dir

SUBCOMMANDS = {"tasks", "models", "ui", "serve", "power", "version", "tui", "mcp"}
ANSWER_LOG_FOLDER = "vlreft_answers"


def _our_task_names() -> set[str]:
    names = set()
    for path in tasks_dir().rglob("*.yaml"):
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith("task:"):
                names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def check_task_names(requested: str, include_paths: list[str]) -> None:
    """Exit with a clear message when a requested task name is unknown (before models or data load)."""
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
        sys.exit(
            "lmms_eval: unknown task(s):\n" + "\n".join(lines)
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
    from lmms_eval.__main__ import cli_evaluate, parse_eval_args

    _, args = parse_eval_args()
    include = [str(tasks_dir())]
    if args.include_path:
        include.append(args.include_path)
    args.include_path = include
    if args.tasks and args.tasks not in ("list", "list_groups", "list_tags", "list_subtasks"):
        check_task_names(args.tasks, include)
    if resume and args.model == "vlreft" and args.output_path:
        os.environ["VLM_PEFT_BENCH_ANSWER_LOG"] = str(Path(args.output_path) / ANSWER_LOG_FOLDER)
        os.environ["VLM_PEFT_BENCH_ANSWER_LOG_SALT"] = f"seed={args.seed}"
    started = time.time()
    cli_evaluate(args)
    # Several processes (torchrun -m vlm_peft_bench.lmms.cli): rank 0 writes the results files, so it alone adds
    # the block; its failure list is its own shard's (each rank's answer log holds the rest).
    if args.model == "vlreft" and args.output_path and os.environ.get("RANK", "0") == "0":
        add_provenance(Path(args.output_path), args.model_args or "", started)


def add_provenance(output_path: Path, model_args: str, since: float) -> None:
    """Add a `vlm_peft_bench` block (versions, prompt template, model hashes) to this run's results files."""
    from lmms_eval.utils import simple_parse_args_string

    from vlm_peft_bench.atomic import write_files
    from vlm_peft_bench.provenance import SCHEMA_VERSION, model_provenance

    parsed = simple_parse_args_string(model_args) if model_args else {}
    block = model_provenance(str(parsed.get("pretrained", "nanollava-tiny")), parsed.get("system_prompt"))
    if parsed.get("adapter"):
        from vlm_peft_bench.methods.attach import adapter_hash, resolve_adapter

        folder = resolve_adapter(str(parsed["adapter"]))
        block["adapter"] = {"path": str(parsed["adapter"]), "sha256": adapter_hash(folder),
                            "merge_lora": parsed.get("merge_lora", False)}
    for path in output_path.rglob("*_results.json"):
        if path.stat().st_mtime >= since:
            data = json.loads(path.read_text())
            data["vlm_peft_bench"] = {"schema_version": SCHEMA_VERSION, **block, **_notes(data), **_failures(data)}
            # replaced whole: a kill or a full disk now must not truncate a finished run's results
            write_files(path.parent, {path.name: json.dumps(data, indent=2, ensure_ascii=False).encode()})


def _notes(data: dict) -> dict:
    """{"notes": {...}} with the full reason when a caption task reports SPICE as unavailable; else {}."""
    results = data.get("results", {})
    if not any(isinstance(scores.get("SPICE,none"), str) for scores in results.values()):
        return {}
    from vlm_peft_bench.scoring import spice_status

    return {"notes": {"SPICE": spice_status() or "SPICE unavailable: see the run's log"}}


def _failures(data: dict) -> dict:
    """{"failures": [...]}: per-sample failures of this run's tasks (unanswerable prompts, empty generations)."""
    from vlm_peft_bench.lmms.vlreft import recorded_failures

    tasks = set(data.get("results", {}))
    failures = [f for f in recorded_failures() if f["task"] in tasks]
    return {"failures": failures} if failures else {}


if __name__ == "__main__":
    main()
