"""The id check shared by the corpus scorers: predictions and ground truth must cover the same ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_same_ids(predictions: Mapping[Any, Any], truth: Mapping[Any, Any], unit: str, truth_name: str) -> None:
    """Raise ValueError naming the ids (up to ten) that only one side has, e.g. unit "question id",
    truth_name "answers"."""
    missing = [i for i in truth if i not in predictions]
    extra = [i for i in predictions if i not in truth]
    parts = []
    if missing:
        parts.append(f"{len(missing)} {unit}(s) have {truth_name} but no prediction: {_preview(missing)}")
    if extra:
        parts.append(f"{len(extra)} {unit}(s) have a prediction but no {truth_name}: {_preview(extra)}")
    if parts:
        raise ValueError("; ".join(parts))


def _preview(ids: list[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
