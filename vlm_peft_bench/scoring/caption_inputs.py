"""The input check shared by the caption scorers (`captions.caption_scores`, `spice.spice_score`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlm_peft_bench.scoring.ids import check_same_ids


def check_caption_inputs(predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]]) -> list[Any]:
    """The ids to score, in `references` order, after checking both sides; raises ValueError/TypeError."""
    if not isinstance(predictions, Mapping) or not isinstance(references, Mapping):
        raise TypeError("predictions and references must be mappings from an id to caption(s)")
    check_same_ids(predictions, references, "id", "references")
    if not references:
        raise ValueError("no captions to score")
    for i, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise TypeError(f"references[{i!r}] must be a list of strings, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"references[{i!r}] is empty: every id needs at least one reference caption")
        if not all(isinstance(r, str) for r in refs):
            raise TypeError(f"references[{i!r}] must hold only strings")
        if not isinstance(predictions[i], str):
            raise TypeError(f"predictions[{i!r}] must be a string, got {type(predictions[i]).__name__}")
    return list(references)
