"""`vlm-peft-bench params`: total, trainable and fraction, per component, for a recipe or a saved adapter, without
loading weights (definition: `adapters/accounting.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.adapters.accounting import COMPONENTS, base_config, component_totals, skeleton
from vlm_peft_bench.methods.recipe import Recipe
from vlm_peft_bench.methods.registry import family, family_for_folder
from vlm_peft_bench.methods.table import PARAMS_DEFINITION


def adapter_file_params(folder: str | Path) -> tuple[str, int]:
    """(saved format, adapter parameter count) of a saved adapter, read from its files without the base model
    (a full fine-tune has no adapter parameters of its own: 0)."""
    info, fam = family_for_folder(folder)
    count, _ = fam.count_files(Path(folder), base_config("nanollava"))
    return info.format, count


def account(base: str, recipe: Recipe | None = None, adapter: str | None = None) -> dict:
    """The full report printed by `vlm-peft-bench params`."""
    config = base_config(base)
    totals = component_totals(skeleton(config))
    total = sum(totals.values())
    trainable_base = dict.fromkeys(COMPONENTS, 0)
    adapter_params, source, derived = 0, None, 0
    if recipe is not None:
        adapter_params, trainable_base = family(recipe.method).count_recipe(recipe, config)
        source = {"recipe": recipe.name}
    elif adapter is not None:
        info, fam = family_for_folder(adapter)
        adapter_params, trainable_base = fam.count_files(Path(adapter), config)
        derived = fam.count_derived(Path(adapter))
        source = {"adapter": str(adapter), "adapter_type": info.format}
    trainable = adapter_params + sum(trainable_base.values())
    components = {c: {"total": totals[c], "trainable": trainable_base[c]} for c in COMPONENTS}
    components["adapter"] = {"total": adapter_params, "trainable": adapter_params}
    return {
        "base": base, **(source or {}), "total": total, "trainable": trainable,
        "fraction": trainable / total, "percent": round(100 * trainable / total, 6),
        "components": components, "definition": PARAMS_DEFINITION,
        **({"derived": derived, "derived_fraction": derived / total} if derived else {}),
    }


def format_report(report: dict) -> str:
    lines = [f"base {report['base']}: {report['trainable']:,} trainable of {report['total']:,} "
             f"({report['percent']:.4f}%)"]
    if report.get("derived"):
        lines.append(f"  derived (computed, not trained): {report['derived']:,} "
                     f"({100 * report['derived_fraction']:.4f}%)")
    for name, c in report["components"].items():
        lines.append(f"  {name:15s} total {c['total']:>14,}  trainable {c['trainable']:>14,}")
    return "\n".join(lines)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)
