"""CV-Bench's official score (nyu-visionx/CV-Bench's evaluation): accuracy per source, then

    2D = (acc(ADE20K) + acc(COCO)) / 2,   3D = acc(Omni3D),   combined = (2D + 3D) / 2.

Accuracies are fractions in [0, 1]. Per-task accuracies (Count, Relation, Depth, Distance) are plain means
over that task's items.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

SOURCES_2D = ("ADE20K", "COCO")
SOURCES_3D = ("Omni3D",)
TASKS = ("Count", "Relation", "Depth", "Distance")


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
    out.update({f"source_{s.lower()}": v for s, v in src.items()})
    out.update({f"task_{t.lower()}": by_task.get(t, math.nan) for t in TASKS})
    return out
