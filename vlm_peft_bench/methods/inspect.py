"""`vlm-peft-bench inspect ADAPTER`: what an adapter folder (or Hub id) is, in seconds, without model weights.

Format, method (the registry's name) and what the files hold, settings, the base it names, the module names it
refers to and their naming layout, trainable parameters (against nanoLLaVA's published architecture and `--base`,
on the meta device), its sha256, and whether `vlreft` will load it on each base, with the loader's own checks (run
against a meta-device base; the adapter's own tensors are read, since they are small, except a full fine-tune's,
whose headers are).
"""

from __future__ import annotations

import re
from pathlib import Path

from vlm_peft_bench.adapters.accounting import base_config, skeleton
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.attach import adapter_hash, resolve_adapter
from vlm_peft_bench.methods.base import MethodFamily
from vlm_peft_bench.methods.params import account
from vlm_peft_bench.methods.registry import family_for_folder
from vlm_peft_bench.methods.table import method_name
from vlm_peft_bench.nanollava.layouts import LAYOUTS

# -- module names and their layout

def module_names(folder: str | Path) -> list[str]:
    """The module names an adapter refers to: peft weight keys with `base_model.model.` stripped and the
    `.lora_A.weight`-style suffixes cut (plus `target_modules` when they are plain names), pyreft component
    strings, full checkpoint tensor names. Sorted, without repeats."""
    _, fam = family_for_folder(folder)
    return fam.module_names(Path(folder))


def name_layout(names: list[str]) -> str:
    """Which naming the module names use (`nanollava.layouts`): a layout's key (`transformers-4.45`, ...),
    "transformers-4.52+" (names that 4.52-4.57 and 5 share), "any" (plain suffixes such as `q_proj`, valid in every
    layout, or no names), "unknown" (no layout has them all: another base, or names of two layouts)."""
    dotted = [re.sub(r"\[(\d+)\]", r".\1", n) for n in names if "." in n]  # pyreft's layers[N] -> layers.N
    if not dotted:
        return "any"
    fits = [layout.key for layout in LAYOUTS if all(layout.split(n) for n in dotted)]
    if len(fits) == 1:
        return fits[0]
    return "transformers-4.52+" if set(fits) == {"transformers-4.52", "transformers-5"} else "unknown"


# -- will vlreft load it: the loader's checks against a meta-device base

def load_problem(folder: Path, family: MethodFamily, model) -> str | None:
    """None when `vlreft` would load the adapter on `model` (a meta-device skeleton), else why not."""
    try:
        family.check(model, folder)
    except AdapterError as err:
        return str(err)
    return None


def _on_base(folder: Path, base: str, family: MethodFamily) -> dict:
    report = account(base, adapter=str(folder))
    problem = load_problem(folder, family, skeleton(base_config(base)))
    return {"base": base, "trainable": report["trainable"], "total": report["total"],
            "fraction": report["fraction"], "percent": report["percent"], "loads": problem is None,
            "problem": problem}


def inspect_adapter(adapter: str, base: str | None = None) -> dict:
    """The report `vlm-peft-bench inspect` prints (AdapterError for a folder that is no adapter)."""
    folder = resolve_adapter(adapter)
    info, family = family_for_folder(folder)
    kind = info.format
    try:
        holds, settings = family.describe(folder)
        method = method_name(folder, info)
        names = family.module_names(folder)
        named_base = family.named_base(folder)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        if isinstance(err, AdapterError):
            raise
        raise AdapterError(f"{folder}: a {kind} adapter whose files cannot be read ({type(err).__name__}: {err})"
                           ) from err
    bases = ["nanollava"] + ([base] if base and base != "nanollava" else [])
    return {"adapter": adapter, "folder": str(folder), "format": kind, "method": method, "holds": holds,
            "settings": settings, "named_base": named_base, "layout": name_layout(names), "module_names": len(names),
            "sha256": adapter_hash(folder), "bases": [_on_base(folder, b, family) for b in bases]}


def format_inspection(report: dict) -> str:
    """The short aligned report for people."""
    settings = report["settings"]
    flat = settings if report["format"] != "pt-lora" else {f"{k}.{s}": v for k in settings
                                                            for s, v in settings[k].items()}
    rows = [("adapter", report["adapter"]), ("format", report["format"]),
            ("method", f"{report['method']} ({report['holds']})")]
    rows += [(f"  {k}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in flat.items()]
    rows += [("named base", report["named_base"] or "-"), ("layout", f"{report['layout']} "
             f"({report['module_names']} module names)"), ("sha256", report["sha256"])]
    for b in report["bases"]:
        rows.append((f"on {b['base']}", f"{b['trainable']:,} trainable of {b['total']:,} ({b['percent']:.4f}%); "
                     + ("vlreft loads it" if b["loads"] else f"vlreft will NOT load it: {b['problem']}")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
