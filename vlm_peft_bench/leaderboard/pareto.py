"""The Pareto frontier of score against trainable fraction: fewer trained parameters and a higher score win."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when `a` (fraction, score) is at least as good as `b` on both axes and better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Iterable[tuple[Hashable, float | None, float | None]]) -> list[Hashable]:
    """Keys of the points no other point dominates, by increasing fraction; points without a number are ignored.

    Identical points do not dominate each other, so both stay on the frontier.
    """
    valid = [(key, float(x), float(y)) for key, x, y in points
             if x is not None and y is not None and not math.isnan(float(x)) and not math.isnan(float(y))]
    front = [(x, -y, str(key), key) for key, x, y in valid
             if not any(dominates((ox, oy), (x, y)) for _, ox, oy in valid)]
    return [key for *_, key in sorted(front)]
