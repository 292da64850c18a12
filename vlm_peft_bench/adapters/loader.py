"""Attach any supported adapter folder to a loaded nanoLLaVA model: detection, checks, application, hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vlm_peft_bench.adapters.detect import AdapterError, validate_adapter_arg
from vlm_peft_bench.adapters.prefix import PrefixAdapter, load_prefix
from vlm_peft_bench.adapters.reft import META_FILE, ReftAdapter, load_reft
from vlm_peft_bench.provenance import combined_hash, file_sha256

ADAPTER_FILES = ["*.json", "*.safetensors", "*.bin"]  # .bin only ever loaded with weights_only=True


@dataclass
class AttachedAdapter:
    model: torch.nn.Module  # what to run (the base model with adapter layers, merged weights or hooks)
    kind: str
    path: str
    sha256: str
    reft: ReftAdapter | None = None
    prefix: PrefixAdapter | None = None


def adapter_file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in the adapter folder, by path relative to it."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def adapter_hash(folder: Path) -> str:
    """One sha256 over every file of the adapter folder (names and contents)."""
    return combined_hash(adapter_file_hashes(folder))


def resolve_adapter(adapter: str) -> Path:
    """A local adapter folder, or a Hub id downloaded (only when the Hub answers; never code files)."""
    from vlm_peft_bench.nanollava.loading import hub_snapshot, looks_like_hub_id

    if looks_like_hub_id(adapter):
        return hub_snapshot(adapter, "adapter", ADAPTER_FILES, error=AdapterError)
    return Path(adapter).expanduser()


def attach_adapter(model: torch.nn.Module, adapter: str, adapter_type: str | None = None, merge_lora: bool = False,
                   positions: str | None = None) -> AttachedAdapter:
    folder = resolve_adapter(adapter)
    kind = validate_adapter_arg(str(folder), adapter_type)
    digest = adapter_hash(folder)
    if kind == "peft":
        from vlm_peft_bench.adapters.peft_adapter import load_peft, read_adapter_config

        if str(read_adapter_config(folder)["peft_type"]).upper() == "PREFIX_TUNING":
            return AttachedAdapter(model, kind, str(folder), digest, prefix=load_prefix(model, folder))
        return AttachedAdapter(load_peft(model, folder, merge=merge_lora), kind, str(folder), digest)
    if kind == "pt-lora":  # PT-PEFT: LoRA weights, with the frozen prefix it was trained on in front
        from vlm_peft_bench.adapters.peft_adapter import load_peft

        lora_model = load_peft(model, folder / "lora", merge=merge_lora)
        return AttachedAdapter(lora_model, kind, str(folder), digest, prefix=load_prefix(lora_model, folder / "prefix"))
    if kind == "pyreft":
        reft = load_reft(model, folder, positions=positions)
        return AttachedAdapter(model, kind, str(folder), digest, reft=reft)
    if kind == "full":
        from vlm_peft_bench.adapters.full import load_full

        return AttachedAdapter(load_full(model, folder), kind, str(folder), digest)
    raise AdapterError(f"adapter type {kind!r} is not supported")


__all__ = ["META_FILE", "AttachedAdapter", "attach_adapter", "adapter_file_hashes", "adapter_hash"]
