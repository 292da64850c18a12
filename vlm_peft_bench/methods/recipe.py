"""Training recipes: YAML files in `adapters_zoo/recipes/`, read into typed sections that refuse unknown keys.

A recipe names its `method`; the method's family says which sections it takes (`reft:`, `lora:`, `prefix:`,
`full:`) and their dataclasses; `train:` is common to all. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.table import method_table
from vlm_peft_bench.paths import recipes_dir


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 1.0e-3
    epochs: int = 1
    batch_size: int = 1
    weight_decay: float | None = None  # None: the method's default


@dataclass(frozen=True)
class ReftSection:
    rank: int
    positions: str
    intervention: str = "LoreftIntervention"
    layers: Any = "all"  # "all", "last:K", a list of indices or "0,5,11"
    component: str = "block_output"  # the residual stream after each decoder layer: the only one supported
    share_weights: bool = True
    dropout: float = 0.0
    intervene_on: str = "prompt"  # or "all": the answer's tokens in training and every generated token too

    def __post_init__(self):
        if self.component != "block_output":
            raise ValueError(f"component={self.component!r}: only block_output (each decoder layer's output) is "
                             "supported")
        if self.intervene_on not in ("prompt", "all"):
            raise ValueError(f"intervene_on={self.intervene_on!r}: use prompt (pyreft's default) or all")


@dataclass(frozen=True)
class LoraSection:
    r: int
    alpha: int
    target_modules: tuple[str, ...]
    dropout: float = 0.0


@dataclass(frozen=True)
class PrefixSection:
    num_virtual_tokens: int


@dataclass(frozen=True)
class FullSection:
    trainable: tuple[str, ...] = ("language_model", "projector")
    gradient_checkpointing: bool = False


SECTION_TYPES = {"reft": ReftSection, "lora": LoraSection, "prefix": PrefixSection, "full": FullSection}


@dataclass(frozen=True)
class Recipe:
    name: str
    method: str
    sections: dict[str, Any]  # section name -> its dataclass
    train: TrainSettings = field(default_factory=TrainSettings)
    source: str = ""  # the file it was read from
    train_keys: tuple[str, ...] = ()  # the `train:` settings the file gives (the others are defaults)

    def section(self, name: str):
        return self.sections[name]

    def replace_section(self, name: str, **changes) -> Recipe:
        sections = dict(self.sections, **{name: dataclasses.replace(self.sections[name], **changes)})
        return dataclasses.replace(self, sections=sections)


def _typed(cls, data: Any, where: str):
    """`cls(**data)`, with unknown and missing keys named, and lists made tuples."""
    if not isinstance(data, dict):
        raise AdapterError(f"{where}: a mapping was expected, found {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise AdapterError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
    values = {k: tuple(v) if isinstance(v, list) and "tuple" in str(known[k].type) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise AdapterError(f"{where}: {err}") from err


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def parse_recipe(data: Any, source: str) -> Recipe:
    """A recipe from its YAML mapping (`source` names it in errors)."""
    sections_of = {name: tuple(info.sections) for name, info in method_table().items() if info.sections}
    if not isinstance(data, dict):
        raise AdapterError(f"{source}: a recipe is a mapping with `method` and its settings")
    method = data.get("method")
    if method not in sections_of:
        raise AdapterError(f"{source}: `method` must be one of {', '.join(sorted(sections_of))}")
    wanted = sections_of[method]
    allowed = {"name", "method", "train", *wanted}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise AdapterError(f"{source}: unknown key(s) {', '.join(unknown)} for method {method} "
                           f"(known: {', '.join(sorted(allowed))})")
    missing = [s for s in wanted if s not in data]
    if missing:
        raise AdapterError(f"{source}: method {method} needs section(s) {', '.join(missing)}")
    sections = {s: _typed(SECTION_TYPES[s], data[s], f"{source}: {s}") for s in wanted}
    train = _typed(TrainSettings, data.get("train") or {}, f"{source}: train")
    return Recipe(name=str(data.get("name") or Path(source).stem), method=method, sections=sections, train=train,
                  source=source, train_keys=tuple(data.get("train") or ()))


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by name (`reft-r4-all`) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipes_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise AdapterError(f"unknown recipe {name_or_path!r}; known recipes: {', '.join(recipe_names())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise AdapterError(f"{path}: not valid YAML ({err})") from err
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return parse_recipe(data, str(path))


def select_layers(spec, n_layers: int) -> list[int]:
    """`all`, `last:K` (the last K layers) or an explicit list of layer indices."""
    if spec in (None, "all"):
        return list(range(n_layers))
    if isinstance(spec, str) and spec.startswith("last:"):
        k = int(spec.split(":", 1)[1])
        if not 1 <= k <= n_layers:
            raise AdapterError(f"layers={spec!r}: the model has {n_layers} layers")
        return list(range(n_layers - k, n_layers))
    layers = [int(x) for x in (spec if isinstance(spec, list | tuple) else str(spec).split(","))]
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise AdapterError(f"layers {bad} do not exist: the model has {n_layers} layers (0..{n_layers - 1})")
    return layers
