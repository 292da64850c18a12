"""Bootstrap 95% intervals from per-sample logs: resample items with replacement, re-aggregate, take percentiles.

Seeded (the same logs give the same interval, byte for byte). Recipes exist for metrics that aggregate
per-item records cheaply; corpus metrics (CIDEr, BLEU, METEOR) would need re-scoring and get none. SPICE is a
corpus metric that is exactly the mean of independent per-image scores: `item_interval` resamples those (our
`lmms_eval` records them in the results file), which re-scores the resampled set exactly.
A log whose records lack what the recipe needs (another lmms-eval layout) raises `UnscorableLog`: the cell then
has no interval and its ci_note says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.scoring.cvbench import SCORE_KEYS, cvbench_scores

DRAWS = 1000
SEED = 0
class UnscorableLog(VlmPeftBenchError, ValueError):
    """The sample log's records do not carry the per-item values the recipe aggregates."""


def _cvbench(samples: list[dict], metrics: tuple[str, ...]) -> tuple[list, Callable[[list], dict[str, float]]]:
    """CV-Bench's official aggregation over the per-item records lmms-eval logged under the metric names."""
    key = next((m for m in metrics if m in samples[0]), None) or next(
        k for k, v in samples[0].items() if isinstance(v, dict) and "correct" in v)
    records = [s[key] for s in samples]

    def score(chosen: list) -> dict[str, float]:
        scores = cvbench_scores(chosen)
        return {m: scores[SCORE_KEYS[m]] for m in metrics}

    return records, score


def _mean(samples: list[dict], metrics: tuple[str, ...]) -> tuple[list, Callable[[list], dict[str, float]]]:
    """Metrics that are the mean of a per-item number (VQA accuracy): the headline's per-item values."""
    values = [float(s[metrics[0]]) for s in samples]

    def score(chosen: list) -> dict[str, float]:
        return {metrics[0]: sum(chosen) / len(chosen)}

    return values, score


RECIPES: dict[str, Callable] = {"cvbench": _cvbench, "mean": _mean}


def point_and_interval(recipe: str, samples: list[dict], metrics: tuple[str, ...], draws: int = DRAWS,
                       seed: int = SEED) -> dict[str, dict]:
    """{metric: {"value": point estimate from the samples, "ci95": [low, high]}} for each metric the recipe
    scores; the point estimate lets the caller check that the logs belong to the results file."""
    try:
        items, score = RECIPES[recipe](samples, metrics)
        point = score(items)
    except (KeyError, TypeError, ValueError, StopIteration, ZeroDivisionError) as err:
        raise UnscorableLog(f"the sample log's records cannot be scored ({type(err).__name__}: {err})") from err
    rng = np.random.default_rng(seed)
    n = len(items)
    per_metric: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(draws):
        drawn = score([items[i] for i in rng.integers(0, n, n)])
        for metric, value in drawn.items():
            per_metric[metric].append(value)
    out = {}
    for metric, values in per_metric.items():
        finite = [v for v in values if not math.isnan(v)]
        if math.isnan(point[metric]) or not finite:
            continue
        low, high = np.percentile(finite, [2.5, 97.5])
        out[metric] = {"value": float(point[metric]), "ci95": [float(low), float(high)]}
    return out


def item_interval(metric: str, values: list[float], draws: int = DRAWS, seed: int = SEED) -> dict[str, float | list]:
    """{"value": mean, "ci95": [low, high]} of a metric that is the plain mean of these per-item scores."""
    intervals = point_and_interval("mean", [{metric: v} for v in values], (metric,), draws, seed)
    if metric not in intervals:
        raise UnscorableLog(f"the per-item {metric} scores give no finite mean")
    return intervals[metric]
