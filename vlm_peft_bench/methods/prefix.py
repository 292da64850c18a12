"""Prefix-tuning (peft's `PrefixTuningConfig`): virtual key/value tokens in front of every layer's attention,
applied as a pre-filled cache (`adapters/prefix.py`) and saved in peft's format."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.prefix import PrefixModel, check_prefix, load_prefix, save_prefix
from vlm_peft_bench.methods._peft import PeftFamily
from vlm_peft_bench.methods.base import Attached, LoadOptions, TrainingStage, untrained
from vlm_peft_bench.methods.recipe import PrefixSection, Recipe

INFO = {
    "name": "prefix", "label": "prefix-tuning", "colour": "#ff7f0e", "format": "peft", "sections": ["prefix"],
    "recognise": {"json": {"adapter_config.json": {"peft_type": "PREFIX_TUNING"}}},
}


class PrefixFamily(PeftFamily):
    module = "prefix"

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        return Attached(model, prefix=load_prefix(model, folder))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        check_prefix(model, folder)

    def prepare_prefix(self, recipe: Recipe, model: torch.nn.Module) -> TrainingStage:
        model.requires_grad_(False)
        prefix = PrefixModel(model, int(recipe.section("prefix").num_virtual_tokens))
        decay = recipe.train.weight_decay or 0.0
        return TrainingStage(prefix, [{"params": [prefix.embeddings], "weight_decay": decay}],
                             lambda folder: save_prefix(folder, prefix), runs_as=Attached(model, prefix=prefix.adapter))

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list[TrainingStage]:
        return [self.prepare_prefix(recipe, model)]

    @staticmethod
    def count_prefix(section: PrefixSection, config: LlavaConfig) -> int:
        """One key and one value vector per layer and virtual token (peft's prefix-tuning parameters)."""
        text = config.text_config
        kv_dim = text.hidden_size // text.num_attention_heads * text.num_key_value_heads
        return int(section.num_virtual_tokens) * text.num_hidden_layers * 2 * kv_dim

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return self.count_prefix(recipe.section("prefix"), config), untrained()


FAMILY = PrefixFamily()
