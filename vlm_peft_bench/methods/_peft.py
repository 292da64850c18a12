"""What every family saved in peft's format shares: reading, checking, loading and counting an adapter folder
(adapter_config.json + adapter_model.safetensors). Not a family itself (no INFO)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlavaConfig

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.peft_adapter import checked_peft, load_peft, read_adapter_config, read_adapter_weights
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, untrained

_PEFT_SUFFIX = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|ia3_l|hada_\w+|lokr_\w+|oft_\w+)"
                          r"(\.[\w]+)*$|\.(weight|bias)$")
SETTING_KEYS = ("peft_type", "task_type", "target_modules", "r", "lora_alpha", "lora_dropout", "use_dora",
                "num_virtual_tokens", "num_layers", "token_dim", "prefix_projection", "modules_to_save")


def peft_settings(folder: Path) -> dict:
    config = read_adapter_config(folder)
    settings = {k: config[k] for k in SETTING_KEYS if config.get(k) is not None}
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(settings["target_modules"])
    return settings


def peft_module_names(folder: Path) -> list[str]:
    """peft weight keys with `base_model.model.` and the tuner's suffixes cut, plus plain `target_modules`."""
    config = read_adapter_config(folder)
    names = {_PEFT_SUFFIX.sub("", key.removeprefix("base_model.model.")) for key in read_adapter_weights(folder)}
    names.discard("prompt_embeddings")  # prefix-tuning: virtual tokens, no module
    targets = config.get("target_modules")
    if isinstance(targets, list | tuple | set):
        names |= {str(t) for t in targets}
    return sorted(names)


def safetensors_params(files: list[Path], folder: Path) -> int:
    """Elements of every tensor in these safetensors files (headers only)."""
    if not files:
        raise AdapterError(f"{folder}: no .safetensors weights to count")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                total += int(torch.Size(handle.get_slice(key).get_shape()).numel())
    return total


class PeftFamily(MethodFamily):
    """A peft adapter of any type peft loads into the model (LoRA, DoRA, IA3, LoHa, LoKr, ...)."""

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        return Attached(load_peft(model, folder, merge=options.merge_lora))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        checked_peft(model, folder)

    def describe(self, folder: Path) -> tuple[str, dict]:
        settings = peft_settings(folder)
        return settings["peft_type"], settings

    def module_names(self, folder: Path) -> list[str]:
        return peft_module_names(folder)

    def named_base(self, folder: Path) -> str | None:
        name = read_adapter_config(folder).get("base_model_name_or_path")
        return name if name not in (None, "", "None") else None

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return safetensors_params(sorted(folder.glob("*.safetensors")), folder), untrained()
