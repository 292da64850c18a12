"""The adapters the benchmark attaches: the zoo's recipes, prepared and saved by the project's training code
(the method registry, `vlm_peft_bench.methods`) for the random base, so that they are in the formats vlreft loads."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

RECIPES = {"reft": "reft-r4-all", "lora": "lora-r8"}  # configuration kind: zoo recipe
NUDGE_STD = 0.002  # how far each trainable value is moved from its initial one


def load_recipes() -> dict:
    """The recipes of RECIPES, by configuration kind (from adapters_zoo/recipes/)."""
    from vlm_peft_bench.methods.recipe import load_recipe

    return {kind: load_recipe(name) for kind, name in RECIPES.items()}


def recipe_settings(recipes: dict) -> dict[str, dict]:
    """What the JSON's `settings` records of each recipe (the fields that decide the adapter's cost)."""
    reft, lora = recipes["reft"].section("reft"), recipes["lora"].section("lora")
    return {"reft": {"rank": reft.rank, "positions": reft.positions, "share_weights": reft.share_weights},
            "lora": {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                     "target_modules": list(lora.target_modules)}}


def make_adapter(recipe, base, dest: Path, seed: int) -> Path:
    """`recipe`'s adapter for `base`, saved in `dest`: prepared for training on a copy of the base and saved by the
    method itself. Its trainable values are first moved off their initial ones by N(0, NUDGE_STD), as after
    training: LoRA's B starts at zero, and merging it would change nothing. Raises ValueError for a recipe that
    trains in several stages (the benchmark attaches single-stage adapters)."""
    import torch

    from vlm_peft_bench.methods.registry import family

    torch.manual_seed(seed)
    donor = copy.deepcopy(base)  # preparing hooks and wraps the model it is given
    stages = family(recipe.method).prepare(recipe, donor)
    if len(stages) != 1:
        raise ValueError(f"recipe {recipe.name!r} trains in {len(stages)} stages; the benchmark needs one")
    method = stages[0]
    with torch.no_grad():
        for group in method.param_groups:
            for p in group["params"]:
                p.add_(torch.randn_like(p) * NUDGE_STD)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file", category=UserWarning)
        method.save(Path(dest))
    return Path(dest)
