"""LoRA (peft's `LoraConfig`): trained from a `lora:` recipe section, saved with peft's `save_pretrained`."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlavaConfig

from vlm_peft_bench.adapters.accounting import skeleton
from vlm_peft_bench.methods._peft import PeftFamily
from vlm_peft_bench.methods.base import Attached, TrainingStage, untrained
from vlm_peft_bench.methods.recipe import LoraSection, Recipe

INFO = {
    "name": "lora", "label": "LoRA", "colour": "#1f77b4", "format": "peft", "sections": ["lora"],
    "recognise": {"json": {"adapter_config.json": {"peft_type": "LORA", "use_dora": False}}},
}


class LoraFamily(PeftFamily):
    module = "lora"
    extra_config: dict = {}  # what a LoRA variant adds to LoraConfig (DoRA: use_dora=True)

    def lora_config(self, section: LoraSection) -> LoraConfig:
        """The one place a LoraConfig is built from a recipe (training and counting use it). No task type:
        the saved adapter_config.json is the one the zoo's hashes were made with."""
        return LoraConfig(r=int(section.r), lora_alpha=int(section.alpha), lora_dropout=float(section.dropout),
                          target_modules=list(section.target_modules), **self.extra_config)

    def with_overrides(self, recipe: Recipe, overrides: dict) -> Recipe:
        rank = overrides.get("rank", overrides.get("r"))
        changes = {k: v for k, v in (("r", rank), ("alpha", overrides.get("alpha"))) if v is not None}
        return recipe.replace_section("lora", **changes) if changes else recipe

    def prepare_lora(self, recipe: Recipe, model: torch.nn.Module) -> TrainingStage:
        peft_model = get_peft_model(model, self.lora_config(recipe.section("lora")))
        params = [p for p in peft_model.parameters() if p.requires_grad]
        decay = recipe.train.weight_decay or 0.0
        # save_embedding_layers=False: peft would otherwise look up the base model's config on the Hub
        return TrainingStage(peft_model, [{"params": params, "weight_decay": decay}],
                             lambda folder: peft_model.save_pretrained(str(folder), save_embedding_layers=False),
                             runs_as=Attached(peft_model.base_model.model))  # what loading a saved LoRA runs

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list[TrainingStage]:
        return [self.prepare_lora(recipe, model)]

    def count_lora(self, section: LoraSection, config: LlavaConfig) -> int:
        model = get_peft_model(skeleton(config), self.lora_config(section))
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return self.count_lora(recipe.section("lora"), config), untrained()


FAMILY = LoraFamily()
__all__ = ["FAMILY", "INFO", "LoraFamily"]
