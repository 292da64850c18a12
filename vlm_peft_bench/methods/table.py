"""The plain table of methods: names, leaderboard labels and colours, saved formats and the markers that recognise
a saved folder. Importable without torch, transformers or peft (the leaderboard reads it).

Each family module of this package declares its row as a literal `INFO = {...}`; this module reads those literals
from the modules' source with `ast.literal_eval`, without importing them (they import torch and peft).

Markers (`INFO["recognise"]`), all of which must hold for a folder to be the method's:

* `files`: paths that must exist in the folder;
* `any_glob`: at least one of these patterns must match a file;
* `absent`: paths that must not exist; `absent_glob`: patterns that must match nothing;
* `json`: {file: {field: value}}: the file exists and is a JSON object whose fields have these values (a value
  `false` also matches a missing field or null; strings compare case-insensitively). `{file: {}}` only asks for
  valid JSON.

A family marked `fallback` is chosen only when no other matches (peft types without a family of their own: IA3,
LoHa, ...); its method name is then read from the folder (`name_field`, lower-cased).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from vlm_peft_bench.adapters.detect import AdapterError, read_json_object

PARAMS_DEFINITION = ("fraction = trainable / total; total = all base-model parameters (vision tower, projector, "
              "language model incl. embeddings and LM head), adapter parameters not added; trainable = the "
              "adapter's parameters, or the language model's and projector's for full fine-tuning")
OTHER_COLOUR = "#8c564b"  # methods the table does not know (third-party rows)
BASE = {"name": "base", "label": "untrained base", "colour": "#555555"}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str
    colour: str
    format: str  # the saved format: what `adapter_type=` names
    module: str  # the family module in this package
    recognise: dict = field(default_factory=dict, hash=False, compare=False)
    sections: tuple[str, ...] = ()  # the recipe sections it trains from (none: it has no recipe)
    fallback: bool = False
    name_field: tuple[str, str] | None = None  # (file, field) naming a fallback's method


def _info_literal(source: str, module: str) -> dict | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "INFO" for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError as err:
                raise TypeError(f"vlm_peft_bench/methods/{module}.py: INFO must be a plain literal ({err})") from err
    return None


@cache
def method_table() -> dict[str, MethodInfo]:
    """Every registered method by name, in the order of their modules' names."""
    table = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".py") or entry.name.startswith("_"):
            continue
        module = entry.name.removesuffix(".py")
        info = _info_literal(entry.read_text(encoding="utf-8"), module)
        if info is None:
            continue
        name_field = info.pop("name_field", None)
        row = MethodInfo(module=module, name_field=tuple(name_field) if name_field else None,
                         sections=tuple(info.pop("sections", ())), **info)
        if row.name in table:
            raise TypeError(f"method {row.name!r} declared by both {table[row.name].module}.py and {module}.py")
        table[row.name] = row
    return table


def formats() -> tuple[str, ...]:
    """The saved formats (`adapter_type=` values), in a stable order."""
    return tuple(sorted({info.format for info in method_table().values()}))


def colour(method: str) -> str:
    if method == BASE["name"]:
        return BASE["colour"]
    info = method_table().get(method)
    return info.colour if info else OTHER_COLOUR


def colours() -> dict[str, str]:
    """Method name -> colour, the untrained base first (fallbacks are named by their files: the other colour)."""
    return {BASE["name"]: BASE["colour"],
            **{name: info.colour for name, info in method_table().items() if not info.fallback}}


# -- recognising a saved folder

def _same(found, wanted) -> bool:
    if wanted is False:
        return found in (False, None)
    if isinstance(wanted, str) and isinstance(found, str):
        return found.upper() == wanted.upper()
    return found == wanted


def _matches(folder: Path, markers: dict) -> bool:
    if any(not (folder / f).is_file() for f in markers.get("files", [])):
        return False
    if markers.get("any_glob") and not any(any(folder.glob(g)) for g in markers["any_glob"]):
        return False
    if any((folder / f).exists() for f in markers.get("absent", [])):
        return False
    if any(any(folder.glob(g)) for g in markers.get("absent_glob", [])):
        return False
    for name, fields in markers.get("json", {}).items():
        if not (folder / name).is_file():
            return False
        data = read_json_object(folder / name)
        if any(not _same(data.get(k), v) for k, v in fields.items()):
            return False
    return True


def _near_miss(folder: Path, info: MethodInfo) -> str | None:
    """A folder with a method's distinctive files but not its required ones (e.g. pyreft weights without their
    config.json): what is missing, for the error message."""
    markers = info.recognise
    globs = markers.get("any_glob", [])
    if globs and any(any(folder.glob(g)) for g in globs):
        missing = [f for f in markers.get("files", []) if not (folder / f).is_file()]
        if missing:
            return f"{info.label} files ({', '.join(globs)}) without {', '.join(missing)}"
    return None


def recognise(folder: str | Path) -> MethodInfo:
    """The method whose saved folder this is, from its files alone (AdapterError if none or several)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise AdapterError(f"adapter={str(folder)!r}: no such folder (pass the folder the adapter was saved to)")
    table = method_table().values()
    found = [info for info in table if not info.fallback and _matches(path, info.recognise)]
    if not found:
        found = [info for info in table if info.fallback and _matches(path, info.recognise)]
    if len(found) == 1:
        return found[0]
    if found:
        raise AdapterError(f"adapter={str(folder)!r}: matches several methods ({', '.join(i.name for i in found)})")
    for info in table:
        if miss := _near_miss(path, info):
            raise AdapterError(f"adapter={str(folder)!r}: {miss}")
    raise AdapterError(
        f"adapter={str(folder)!r}: not a recognised adapter folder. Expected a peft adapter (adapter_config.json), "
        "a pyreft intervention (config.json + intkey_*.bin) or fully fine-tuned weights (config.json + "
        "*.safetensors)."
    )


def method_name(folder: str | Path, info: MethodInfo | None = None) -> str:
    """The method a saved folder holds: its family's name, or for a fallback the type its files name."""
    path = Path(folder).expanduser()
    info = info or recognise(path)
    if info.fallback and info.name_field:
        file, key = info.name_field
        return str(read_json_object(path / file).get(key, info.name)).lower()
    return info.name
