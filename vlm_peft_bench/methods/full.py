"""Full fine-tuning: the language model's and projector's weights (or the components a recipe names) trained and
saved as safetensors beside the model's config.json; loaded under any nanoLLaVA layout (`adapters/full.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlavaConfig

from vlm_peft_bench.adapters.accounting import COMPONENTS, component_of, component_totals, skeleton
from vlm_peft_bench.adapters.full import (
    check_full_shapes,
    full_files,
    load_full,
    native_names,
    read_full_shapes,
    read_full_values,
)
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, TrainingStage
from vlm_peft_bench.methods.recipe import Recipe
from vlm_peft_bench.nanollava.layouts import native_module, native_prefixes

INFO = {
    "name": "full", "label": "full fine-tuning", "colour": "#2ca02c", "format": "full", "sections": ["full"],
    "recognise": {"files": ["config.json"], "any_glob": ["*.safetensors", "*.bin"], "absent": ["adapter_config.json"],
                  "absent_glob": ["intkey_*"], "json": {"config.json": {}}},
}
FULL_VALUES_LIMIT = 64 * 2**20  # `check` reads values (NaN/inf) of fine-tunes up to this size, else headers only


class FullFamily(MethodFamily):
    module = "full"

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        return Attached(load_full(model, folder))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        check_full_shapes(folder, read_full_shapes(folder), model)
        if sum(f.stat().st_size for f in full_files(folder)) <= FULL_VALUES_LIMIT:
            read_full_values(folder)

    def describe(self, folder: Path) -> tuple[str, dict]:
        shapes = read_full_shapes(folder)
        return "full fine-tuning", {"tensors": len(shapes), "top_modules": sorted({k.split(".")[0] for k in shapes})}

    def module_names(self, folder: Path) -> list[str]:
        return sorted(read_full_shapes(folder))

    def named_base(self, folder: Path) -> str | None:
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path")
        return name if name not in (None, "", "None") else None

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        """Fully fine-tuned weights: what they replace is what was trained."""
        model = skeleton(config)
        prefixes = native_prefixes(model)
        shapes = {n: p.numel() for n, p in model.named_parameters()}
        counts = dict.fromkeys(COMPONENTS, 0)
        for key in native_names(folder, read_full_shapes(folder), model).values():
            if key in shapes:
                counts[component_of(key, prefixes)] += shapes[key]
        return 0, counts

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list[TrainingStage]:
        section = recipe.section("full")
        chosen = set(section.trainable)
        prefixes = native_prefixes(model)
        for name, p in model.named_parameters():
            p.requires_grad_(component_of(name, prefixes) in chosen)
        if section.gradient_checkpointing:
            native_module(model, "text").gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        weight_decay = 0.01 if recipe.train.weight_decay is None else recipe.train.weight_decay

        def save(folder: Path) -> None:
            state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
            save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
            model.config.to_json_file(str(folder / "config.json"))

        return [TrainingStage(model, [{"params": decay, "weight_decay": weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], save)]

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        totals = component_totals(skeleton(config))
        chosen = recipe.section("full").trainable
        return 0, {c: (totals[c] if c in chosen else 0) for c in COMPONENTS}


FAMILY = FullFamily()
