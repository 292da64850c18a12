"""Attach any supported adapter folder to a loaded nanoLLaVA model: recognition, the family's checks and loading,
and the folder's hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.prefix import PrefixAdapter
from vlm_peft_bench.adapters.reft import ReftAdapter
from vlm_peft_bench.methods.base import LoadOptions
from vlm_peft_bench.methods.registry import family_for_folder
from vlm_peft_bench.methods.table import method_name
from vlm_peft_bench.nanollava.loading import hub_snapshot, looks_like_hub_id
from vlm_peft_bench.provenance import combined_hash, file_sha256

ADAPTER_FILES = ["*.json", "*.safetensors", "*.bin"]  # .bin only ever loaded with weights_only=True


@dataclass
class AttachedAdapter:
    model: torch.nn.Module  # what to run (the base model with adapter layers, merged weights or hooks)
    kind: str  # the saved format (pyreft, peft, pt-lora, full)
    path: str
    sha256: str
    method: str = ""  # the method the files hold (reft, lora, dora, prefix, pt-lora, full, or a peft type)
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
    if looks_like_hub_id(adapter):
        return hub_snapshot(adapter, "adapter", ADAPTER_FILES, error=AdapterError)
    return Path(adapter).expanduser()


def attach_adapter(model: torch.nn.Module, adapter: str, adapter_type: str | None = None, merge_lora: bool = False,
                   positions: str | None = None, strength: float | None = None) -> AttachedAdapter:
    folder = resolve_adapter(adapter)
    info, family = family_for_folder(folder, adapter_type)
    digest = adapter_hash(folder)
    attached = family.load(model, folder, LoadOptions(merge_lora=merge_lora, positions=positions, strength=strength))
    return AttachedAdapter(attached.model, info.format, str(folder), digest, method_name(folder, info),
                           reft=attached.reft, prefix=attached.prefix)
