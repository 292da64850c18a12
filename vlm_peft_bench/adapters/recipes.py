"""Training recipes: YAML files in `adapters_zoo/recipes/`, loaded and checked here."""

from __future__ import annotations

from pathlib import Path

import yaml

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.paths import recipes_dir

METHODS = ("reft", "lora", "full", "prefix", "pt-lora")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def load_recipe(name_or_path: str) -> dict:
    """A recipe by name (`reft-r4-all`) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipes_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise AdapterError(f"unknown recipe {name_or_path!r}; known recipes: {', '.join(recipe_names())}")
    recipe = yaml.safe_load(path.read_text())
    if not isinstance(recipe, dict) or recipe.get("method") not in METHODS:
        raise AdapterError(f"{path}: `method` must be one of {', '.join(METHODS)}")
    recipe.setdefault("name", path.stem)
    return recipe


def select_layers(spec, n_layers: int) -> list[int]:
    """`all`, `last:K` (the last K layers) or an explicit list of layer indices."""
    if spec in (None, "all"):
        return list(range(n_layers))
    if isinstance(spec, str) and spec.startswith("last:"):
        k = int(spec.split(":", 1)[1])
        if not 1 <= k <= n_layers:
            raise AdapterError(f"layers={spec!r}: the model has {n_layers} layers")
        return list(range(n_layers - k, n_layers))
    layers = [int(x) for x in (spec if isinstance(spec, list) else str(spec).split(","))]
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise AdapterError(f"layers {bad} do not exist: the model has {n_layers} layers (0..{n_layers - 1})")
    return layers
