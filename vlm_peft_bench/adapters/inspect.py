"""`vlm-peft-bench inspect ADAPTER`: what an adapter folder (or Hub id) is, in seconds, without model weights.

Format, method and settings, the base it names, the module names it refers to and their naming layout,
trainable parameters (against nanoLLaVA's published architecture and `--base`, on the meta device), its sha256,
and whether `vlreft` will load it on each base, with the loader's own checks (run against a meta-device base; the
adapter's own tensors are read, since they are small, except a full fine-tune's, whose headers are).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vlm_peft_bench.adapters.detect import AdapterError, detect_adapter_type
from vlm_peft_bench.nanollava.layouts import LAYOUTS

FULL_VALUES_LIMIT = 64 * 2**20  # full fine-tunes up to this size get the NaN/inf check too (bigger: headers only)
_PEFT_SUFFIX = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|ia3_l|hada_\w+|lokr_\w+|oft_\w+)"
                          r"(\.[\w]+)*$|\.(weight|bias)$")


# -- module names and their layout

def module_names(folder: str | Path) -> list[str]:
    """The module names an adapter refers to: peft weight keys with `base_model.model.` stripped and the
    `.lora_A.weight`-style suffixes cut (plus `target_modules` when they are plain names), pyreft component
    strings, full checkpoint tensor names. Sorted, without repeats."""
    path = Path(folder)
    kind = detect_adapter_type(path)
    if kind == "pt-lora":
        return sorted(set(module_names(path / "prefix")) | set(module_names(path / "lora")))
    if kind == "pyreft":
        from vlm_peft_bench.adapters.reft import read_reft_config

        read_reft_config(path)  # checks the config
        return sorted({rep[1] for rep in json.loads((path / "config.json").read_text())["representations"]})
    if kind == "full":
        from vlm_peft_bench.adapters.full import read_full_shapes

        return sorted(read_full_shapes(path))
    from vlm_peft_bench.adapters.peft_adapter import read_adapter_config, read_adapter_weights

    config = read_adapter_config(path)
    names = {_PEFT_SUFFIX.sub("", key.removeprefix("base_model.model.")) for key in read_adapter_weights(path)}
    names.discard("prompt_embeddings")  # prefix-tuning: virtual tokens, no module
    targets = config.get("target_modules")
    if isinstance(targets, list | tuple | set):
        names |= {str(t) for t in targets}
    return sorted(names)


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


# -- what the files say

def _peft_settings(folder: Path) -> dict:
    from vlm_peft_bench.adapters.peft_adapter import read_adapter_config

    config = read_adapter_config(folder)
    keys = ("peft_type", "task_type", "target_modules", "r", "lora_alpha", "lora_dropout", "use_dora",
            "num_virtual_tokens", "num_layers", "token_dim", "prefix_projection", "modules_to_save")
    settings = {k: config[k] for k in keys if config.get(k) is not None}
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(settings["target_modules"])
    return settings


def _reft_settings(folder: Path) -> dict:
    from vlm_peft_bench.adapters.reft import META_FILE, read_reft_config

    specs = read_reft_config(folder)
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return {"intervention_types": sorted({s.intervention_type for s in specs}), "interventions": len(specs),
            "layers": sorted({s.layer for s in specs}), "components": sorted({s.where for s in specs}),
            "rank": sorted({s.rank for s in specs}), "hidden_size": sorted({s.embed_dim for s in specs}),
            "positions": meta.get("positions"), "share_weights": meta.get("share_weights")}


def _full_settings(folder: Path) -> dict:
    from vlm_peft_bench.adapters.full import read_full_shapes

    shapes = read_full_shapes(folder)
    return {"tensors": len(shapes), "top_modules": sorted({k.split(".")[0] for k in shapes})}


def _named_base(folder: Path, kind: str) -> str | None:
    """The base the files name: peft's `base_model_name_or_path`, a full config's `_name_or_path`."""
    if kind == "pt-lora":
        return _named_base(folder / "lora", "peft") or _named_base(folder / "prefix", "peft")
    name = None
    if kind == "peft":
        from vlm_peft_bench.adapters.peft_adapter import read_adapter_config

        name = read_adapter_config(folder).get("base_model_name_or_path")
    elif kind == "full":
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    return name if name not in (None, "", "None") else None


def _describe(folder: Path, kind: str) -> tuple[str, dict]:
    if kind == "pyreft":
        settings = _reft_settings(folder)
        return "+".join(settings["intervention_types"]), settings
    if kind == "full":
        return "full fine-tuning", _full_settings(folder)
    if kind == "pt-lora":
        prefix, lora = _peft_settings(folder / "prefix"), _peft_settings(folder / "lora")
        return f"pt-lora ({prefix['peft_type']} + {lora['peft_type']})", {"prefix": prefix, "lora": lora}
    settings = _peft_settings(folder)
    return settings["peft_type"], settings


# -- will vlreft load it: the loader's checks against a meta-device base

def load_problem(folder: Path, kind: str, model) -> str | None:
    """None when `vlreft` would load the adapter on `model` (a meta-device skeleton), else why not."""
    try:
        if kind == "pyreft":
            from vlm_peft_bench.adapters.reft import check_reft

            check_reft(model, folder)
        elif kind == "full":
            from vlm_peft_bench.adapters.full import check_full_shapes, full_files, read_full_shapes, read_full_values

            check_full_shapes(folder, read_full_shapes(folder), model)
            if sum(f.stat().st_size for f in full_files(folder)) <= FULL_VALUES_LIMIT:
                read_full_values(folder)
        else:
            for part in (["prefix", "lora"] if kind == "pt-lora" else [""]):
                _check_peft(folder / part if part else folder, model)
    except AdapterError as err:
        return str(err)
    return None


def _check_peft(folder: Path, model) -> None:
    from vlm_peft_bench.adapters.peft_adapter import checked_peft, read_adapter_config
    from vlm_peft_bench.adapters.prefix import check_prefix

    if str(read_adapter_config(folder)["peft_type"]).upper() == "PREFIX_TUNING":
        check_prefix(model, folder)
    else:
        checked_peft(model, folder)


def _on_base(folder: Path, base: str, kind: str) -> dict:
    from vlm_peft_bench.adapters.accounting import account, base_config, skeleton

    report = account(base, adapter=str(folder))
    problem = load_problem(folder, kind, skeleton(base_config(base)))
    return {"base": base, "trainable": report["trainable"], "total": report["total"],
            "fraction": report["fraction"], "percent": report["percent"], "loads": problem is None,
            "problem": problem}


def inspect_adapter(adapter: str, base: str | None = None) -> dict:
    """The report `vlm-peft-bench inspect` prints (AdapterError for a folder that is no adapter)."""
    from vlm_peft_bench.adapters.loader import adapter_hash, resolve_adapter

    folder = resolve_adapter(adapter)
    kind = detect_adapter_type(folder)
    try:
        method, settings = _describe(folder, kind)
        names = module_names(folder)
        named_base = _named_base(folder, kind)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        if isinstance(err, AdapterError):
            raise
        raise AdapterError(f"{folder}: a {kind} adapter whose files cannot be read ({type(err).__name__}: {err})"
                           ) from err
    bases = ["nanollava"] + ([base] if base and base != "nanollava" else [])
    return {"adapter": adapter, "folder": str(folder), "format": kind, "method": method, "settings": settings,
            "named_base": named_base, "layout": name_layout(names), "module_names": len(names),
            "sha256": adapter_hash(folder), "bases": [_on_base(folder, b, kind) for b in bases]}


def format_inspection(report: dict) -> str:
    """The short aligned report for people."""
    settings = report["settings"]
    flat = settings if report["format"] != "pt-lora" else {f"{k}.{s}": v for k in settings
                                                            for s, v in settings[k].items()}
    rows = [("adapter", report["adapter"]), ("format", report["format"]), ("method", report["method"])]
    rows += [(f"  {k}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in flat.items()]
    rows += [("named base", report["named_base"] or "-"), ("layout", f"{report['layout']} "
             f"({report['module_names']} module names)"), ("sha256", report["sha256"])]
    for b in report["bases"]:
        rows.append((f"on {b['base']}", f"{b['trainable']:,} trainable of {b['total']:,} ({b['percent']:.4f}%); "
                     + ("vlreft loads it" if b["loads"] else f"vlreft will NOT load it: {b['problem']}")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
