"""Which metric heads each task's column, which others sit beside it, and how its 95% interval is drawn.

Adding a task is one entry in TASKS. A task matches an entry by its exact name, else by the longest entry that
is a prefix followed by "_" (so `cvbench_mini` uses `cvbench`, and `cvbench_2d` its own entry).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlm_peft_bench.scoring.cvbench import metrics_for


@dataclass(frozen=True)
class TaskSpec:
    headline: str  # the metric plotted against the trainable fraction and used for the Pareto frontier
    extra: tuple[str, ...] = ()  # further columns, in this order
    ci: str | None = None  # a bootstrap recipe in `ci.RECIPES`, or None: no interval ("n/a": corpus metrics)
    item_ci: tuple[str, ...] = ()  # corpus metrics that are the mean of per-item scores the results file records


def _cvbench(*parts: str) -> TaskSpec:
    """CV-Bench's published scores for these parts (scoring/cvbench.py's table): combined, 2D, 3D, those present."""
    official = [m.name for m in metrics_for(parts) if m.official]
    return TaskSpec(official[0], tuple(official[1:]), ci="cvbench")


TASKS: dict[str, TaskSpec] = {
    "cvbench": _cvbench("2D", "3D"),
    "cvbench_2d": _cvbench("2D"),
    "cvbench_3d": _cvbench("3D"),
    "coco_captions": TaskSpec("CIDEr", ("Bleu_4", "METEOR", "ROUGE_L", "SPICE"), item_ci=("SPICE",)),
    "vqa_v2": TaskSpec("vqa_accuracy", ci="mean"),
}


def spec_for(task: str) -> TaskSpec | None:
    """The entry for a task name, or None when the leaderboard does not know the task."""
    if task in TASKS:
        return TASKS[task]
    prefixes = [name for name in TASKS if task.startswith(name + "_")]
    return TASKS[max(prefixes, key=len)] if prefixes else None


def task_order(task: str) -> int:
    """Position of the task's entry in TASKS (tables and plots list tasks in this order)."""
    spec = spec_for(task)
    return list(TASKS.values()).index(spec) if spec is not None else len(TASKS)


def metrics_of(spec: TaskSpec) -> tuple[str, ...]:
    return (spec.headline, *spec.extra)
