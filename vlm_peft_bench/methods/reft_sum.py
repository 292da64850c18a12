"""A sum of ReFT parents' edits (`vlm-peft-bench combine` of pyreft folders; see `adapters/reft_sum.py`): each
parent's interventions at its own positions, their weighted edits added. Trained parameters: the parents'."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.reft_sum import check_reft_sum, load_reft_sum, read_composition
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, untrained
from vlm_peft_bench.methods.reft import FAMILY as REFT

INFO = {
    "name": "reft-sum", "label": "ReFT, sum of edits", "colour": "#aec7e8", "format": "pyreft-sum",
    "recognise": {"files": ["composition.json"], "json": {"composition.json": {}}},
}


class ReftSumFamily(MethodFamily):
    module = "reft_sum"

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        return Attached(model, reft=load_reft_sum(model, folder))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        check_reft_sum(model, folder)

    def describe(self, folder: Path) -> tuple[str, dict]:
        parents, weights = read_composition(folder)
        described = [REFT.describe(p) for p in parents]
        return (f"sum of {len(parents)} ReFT edits",
                {"weights": weights, "parents": [{"holds": h, **s} for h, s in described]})

    def module_names(self, folder: Path) -> list[str]:
        return sorted({n for p in read_composition(folder)[0] for n in REFT.module_names(p)})

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return sum(REFT.count_files(p, config)[0] for p in read_composition(folder)[0]), untrained()


FAMILY = ReftSumFamily()
