"""Recognise what kind of trained adapter a folder holds, from its files alone (nothing is loaded or run)."""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.errors import VlmPeftBenchError

ADAPTER_TYPES = ("pyreft", "peft", "full", "pt-lora")


class AdapterError(VlmPeftBenchError, ValueError):
    """An adapter that cannot be used, with what is wrong and how to fix it."""


def detect_adapter_type(folder: str | Path) -> str:
    """`pyreft` (ReftModel.save: config.json + intkey_*.bin), `peft` (adapter_config.json), `pt-lora`
    (prefix/ and lora/ peft adapters, trained one after the other) or `full` (config.json + safetensors)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise AdapterError(f"adapter={folder!r}: no such folder (pass the folder the adapter was saved to)")
    if (path / "adapter_config.json").is_file():
        return "peft"
    if (path / "prefix" / "adapter_config.json").is_file() and (path / "lora" / "adapter_config.json").is_file():
        return "pt-lora"
    if any(path.glob("intkey_*")):
        if not (path / "config.json").is_file():
            raise AdapterError(f"adapter={folder!r}: pyreft intervention files without their config.json")
        return "pyreft"
    if (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin"))):
        try:
            json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as err:
            raise AdapterError(f"{path / 'config.json'}: not valid JSON ({err})") from err
        return "full"
    raise AdapterError(
        f"adapter={folder!r}: not a recognised adapter folder. Expected a peft adapter (adapter_config.json), "
        "a pyreft intervention (config.json + intkey_*.bin) or fully fine-tuned weights (config.json + "
        "*.safetensors)."
    )


def validate_adapter_arg(adapter: str, adapter_type: str | None = None) -> str:
    """Check an `adapter=` model argument and return its type; `adapter_type` overrides detection."""
    if adapter_type is not None and adapter_type not in ADAPTER_TYPES:
        raise AdapterError(f"adapter_type={adapter_type!r}: use one of {', '.join(ADAPTER_TYPES)}")
    detected = detect_adapter_type(adapter)
    return adapter_type or detected
