"""CV-Bench's official score (nyu-visionx/CV-Bench's evaluation): accuracy per source, then

    2D = (acc(ADE20K) + acc(COCO)) / 2,   3D = acc(Omni3D),   combined = (2D + 3D) / 2.

Accuracies are fractions in [0, 1]. Per-task accuracies (Count, Relation, Depth, Distance) are plain means
over that task's items.

This module is also the one place CV-Bench's prompt suffix and metric names are written: the cvbench tasks
(tasks/cvbench/utils.py builds their metric lists and prompts from `METRICS` and `POST_PROMPT`), the leaderboard's
columns and intervals (leaderboard/tasks.py, ci.py) and the synthetic pre-training data read them here. Plain
Python, no torch: the leaderboard imports it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SOURCES_2D = ("ADE20K", "COCO")
SOURCES_3D = ("Omni3D",)
TASKS_2D = ("Count", "Relation")
TASKS_3D = ("Depth", "Distance")
TASKS = TASKS_2D + TASKS_3D
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {"2D": (SOURCES_2D, TASKS_2D), "3D": (SOURCES_3D, TASKS_3D)}

# The instruction after each question and its lettered choices (CV-Bench's evaluation prompt).
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Metric:
    """One reported CV-Bench number."""

    name: str  # lmms-eval's metric name: results' "<name>,none" key, the sample log's field, the cards' key
    score: str  # its key in `cvbench_scores`
    parts: tuple[str, ...]  # the PARTS whose items it averages; a task without them does not report it
    official: bool = False  # one of CV-Bench's published scores (combined, 2D, 3D): the leaderboard's columns


def _source_key(source: str) -> str:
    return f"source_{source.lower()}"


def _task_key(task: str) -> str:
    return f"task_{task.lower()}"


# Every CV-Bench metric, in the order lmms-eval reports them.
METRICS: tuple[Metric, ...] = (
    Metric("cvbench_combined", "combined", ("2D", "3D"), official=True),
    Metric("cvbench_2d", "2d", ("2D",), official=True),
    Metric("cvbench_3d", "3d", ("3D",), official=True),
    Metric("accuracy", "accuracy", ()),
    *(Metric(_source_key(s), _source_key(s), (part,)) for part, (sources, _) in PARTS.items() for s in sources),
    *(Metric(_task_key(t), _task_key(t), (part,)) for part, (_, tasks) in PARTS.items() for t in tasks),
)
SCORE_KEYS: dict[str, str] = {m.name: m.score for m in METRICS}  # metric name -> key in `cvbench_scores`


def metrics_for(parts: Iterable[str] = tuple(PARTS)) -> tuple[Metric, ...]:
    """The metrics a task over these parts reports, in order (a 2D-only task has no 3D or combined score)."""
    parts = tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"CV-Bench parts {list(parts)}: expected a non-empty subset of {list(PARTS)}")
    return tuple(m for m in METRICS if set(m.parts) <= set(parts))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def accuracy_by(records: Iterable[Mapping], key: str) -> dict[str, float]:
    """Accuracy of `records` (each with `correct` and `key`) grouped by `key`."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        groups[r[key]].append(float(r["correct"]))
    return {k: _mean(v) for k, v in sorted(groups.items())}


def cvbench_scores(records: Iterable[Mapping]) -> dict[str, float]:
    """All CV-Bench numbers from per-item records with `correct`, `source` and `task` fields.

    A score whose sources are absent (the 3D score of a 2D-only run, say) is NaN, never a partial average.
    """
    records = list(records)
    by_source = accuracy_by(records, "source")
    by_task = accuracy_by(records, "task")
    unknown = set(by_source) - set(SOURCES_2D) - set(SOURCES_3D)
    if unknown:
        raise ValueError(f"unknown CV-Bench source(s) {sorted(unknown)}; expected {SOURCES_2D + SOURCES_3D}")
    src = {s: by_source.get(s, math.nan) for s in SOURCES_2D + SOURCES_3D}
    score_2d = (src["ADE20K"] + src["COCO"]) / 2
    score_3d = src["Omni3D"]
    out = {
        "combined": (score_2d + score_3d) / 2,
        "2d": score_2d,
        "3d": score_3d,
        "accuracy": _mean([float(r["correct"]) for r in records]),
    }
    out.update({_source_key(s): v for s, v in src.items()})
    out.update({_task_key(t): by_task.get(t, math.nan) for t in TASKS})
    return out
