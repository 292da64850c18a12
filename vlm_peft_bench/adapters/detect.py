"""The error every adapter problem raises, and the reader of an adapter's JSON files. (Which method a saved folder
holds is recognised by the method registry: `vlm_peft_bench.methods.table.recognise`.)"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.errors import VlmPeftBenchError


class AdapterError(VlmPeftBenchError, ValueError):
    """An adapter that cannot be used, with what is wrong and how to fix it."""


def read_json_object(path: Path) -> dict:
    """A JSON object from an adapter's file; AdapterError naming the file otherwise."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise AdapterError(f"{path}: a JSON object was expected, found {type(value).__name__}")
    return value
