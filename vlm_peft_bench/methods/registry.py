"""The method families themselves (heavy: they import torch and peft), looked up by method name or by saved folder.
The plain facts about each (names, colours, formats, markers) are in `table.py`."""

from __future__ import annotations

import importlib
from pathlib import Path

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.base import MethodFamily
from vlm_peft_bench.methods.table import MethodInfo, formats, method_table, recognise


def family(name: str) -> MethodFamily:
    """The family of a method name (`reft`, `lora`, `dora`, ...)."""
    info = method_table().get(name)
    if info is None:
        raise AdapterError(f"unknown method {name!r} (known: {', '.join(method_table())})")
    return family_of(info)


def family_of(info: MethodInfo) -> MethodFamily:
    return importlib.import_module(f"{__package__}.{info.module}").FAMILY


def family_for_folder(folder: str | Path, adapter_type: str | None = None) -> tuple[MethodInfo, MethodFamily]:
    """The family whose saved folder this is; `adapter_type` (a saved format) must agree with what the files are."""
    if adapter_type is not None and adapter_type not in formats():
        raise AdapterError(f"adapter_type={adapter_type!r}: use one of {', '.join(formats())}")
    info = recognise(folder)
    if adapter_type is not None and adapter_type != info.format:
        raise AdapterError(f"adapter_type={adapter_type!r}, but {folder} holds a {info.format} adapter "
                           f"({info.label})")
    return info, family_of(info)
