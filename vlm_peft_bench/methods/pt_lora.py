"""PT-PEFT: prefix-tuning first, then LoRA trained behind the frozen prefix. Saved as two peft adapters, `prefix/`
and `lora/`, in one folder; run as LoRA inside the model with the prefix's cache in front."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.peft_adapter import load_peft
from vlm_peft_bench.adapters.prefix import PrefixModel, check_prefix, load_prefix, save_prefix
from vlm_peft_bench.methods._peft import peft_module_names, peft_settings, safetensors_params
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, TrainingStage, untrained
from vlm_peft_bench.methods.lora import FAMILY as LORA
from vlm_peft_bench.methods.prefix import FAMILY as PREFIX
from vlm_peft_bench.methods.recipe import Recipe

INFO = {
    "name": "pt-lora", "label": "prefix, then LoRA", "colour": "#9467bd", "format": "pt-lora",
    "sections": ["prefix", "lora"],
    "recognise": {"files": ["prefix/adapter_config.json", "lora/adapter_config.json"],
                  "absent": ["adapter_config.json"]},
}


class PrefixThenLoraFamily(MethodFamily):
    module = "pt_lora"

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        lora_model = load_peft(model, folder / "lora", merge=options.merge_lora)
        return Attached(lora_model, prefix=load_prefix(lora_model, folder / "prefix"))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        check_prefix(model, folder / "prefix")
        LORA.check(model, folder / "lora")

    def describe(self, folder: Path) -> tuple[str, dict]:
        prefix, lora = peft_settings(folder / "prefix"), peft_settings(folder / "lora")
        return f"pt-lora ({prefix['peft_type']} + {lora['peft_type']})", {"prefix": prefix, "lora": lora}

    def module_names(self, folder: Path) -> list[str]:
        return sorted(set(peft_module_names(folder / "prefix")) | set(peft_module_names(folder / "lora")))

    def named_base(self, folder: Path) -> str | None:
        return LORA.named_base(folder / "lora") or PREFIX.named_base(folder / "prefix")

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return safetensors_params(sorted(folder.rglob("*.safetensors")), folder), untrained()

    def with_overrides(self, recipe: Recipe, overrides: dict) -> Recipe:
        return LORA.with_overrides(recipe, overrides)

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list:
        """Stage 1 trains the prefix; stage 2 freezes it and trains LoRA behind it (built when stage 2 starts)."""
        first = PREFIX.prepare_prefix(recipe, model)

        def second() -> TrainingStage:
            lora = LORA.prepare_lora(recipe, model)
            prefix = PrefixModel(lora.model, first.model.embeddings.shape[0], init=first.model.embeddings.detach())
            prefix.embeddings.requires_grad_(False)

            def save(folder: Path) -> None:
                save_prefix(folder / "prefix", prefix)
                lora.save(folder / "lora")

            return TrainingStage(prefix, lora.param_groups, save,
                                 runs_as=Attached(lora.attached().model, prefix=prefix.adapter))

        return [first, second]

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return (PREFIX.count_prefix(recipe.section("prefix"), config)
                + LORA.count_lora(recipe.section("lora"), config)), untrained()


FAMILY = PrefixThenLoraFamily()
