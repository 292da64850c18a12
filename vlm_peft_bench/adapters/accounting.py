"""Parameter accounting: total, trainable and fraction, per component, without loading weights.

Definition (used everywhere, the leaderboard included):

* total = every parameter of the base model (vision tower + projector + language model, LM head and
  embeddings included); adapter parameters are NOT added to the total;
* trainable = parameters the method updates: the adapter's own (LoReFT interventions, LoRA matrices, prefix
  embeddings) or, for full fine-tuning, the language model's and projector's;
* fraction = trainable / total.

This reproduces the VL-ReFT paper's Table 4 for nanoLLaVA: LoReFT rank 4 on all 24 layers 0.019%, LoRA r 8
0.17%, full fine-tuning 60.99%. The base is instantiated on the meta device (no memory, no weights); an
adapter folder is counted from its files alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlavaConfig, LlavaForConditionalGeneration

from vlm_peft_bench.adapters.detect import AdapterError, detect_adapter_type
from vlm_peft_bench.adapters.full import native_names, read_full_shapes
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.recipes import select_layers
from vlm_peft_bench.nanollava.checkpoint import (
    config_from_original,
    is_original_config,
    native_prefixes,
    read_config,
)
from vlm_peft_bench.nanollava.config import NANOLLAVA_IMAGE_TOKEN_ID, nanollava_config

DEFINITION = ("fraction = trainable / total; total = all base-model parameters (vision tower, projector, "
              "language model incl. embeddings and LM head), adapter parameters not added; trainable = the "
              "adapter's parameters, or the language model's and projector's for full fine-tuning")
COMPONENTS = ("vision_tower", "projector", "language_model")


def base_config(base: str) -> LlavaConfig:
    """`nanollava` (the published architecture), `nanollava-tiny`, or a model folder (its config.json only)."""
    if base == "nanollava":
        return nanollava_config()
    from vlm_peft_bench.nanollava.loading import resolve_pretrained

    raw = read_config(resolve_pretrained(base))
    if is_original_config(raw):
        return config_from_original(raw, NANOLLAVA_IMAGE_TOKEN_ID)
    return LlavaConfig.from_dict(raw)


def skeleton(config: LlavaConfig) -> LlavaForConditionalGeneration:
    """The model on the meta device: shapes and names, no storage."""
    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


def component_of(name: str, prefixes: dict[str, str]) -> str:
    if name.startswith(prefixes["vision"]):
        return "vision_tower"
    if name.startswith(prefixes["projector"]):
        return "projector"
    return "language_model"


def component_totals(model: torch.nn.Module) -> dict[str, int]:
    prefixes = native_prefixes(model)
    totals = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        totals[component_of(name, prefixes)] += p.numel()
    return totals


def reft_intervention_size(intervention: str, hidden: int, rank: int, add_bias: bool = True) -> int:
    """Parameters of one pyreft intervention, counted on a real instance of (our reimplementation of) its class:
    trainable parameters only, not pyvene's `embed_dim` buffers nor the orthogonal parametrisation's base."""
    from vlm_peft_bench.adapters.interventions import INTERVENTIONS

    cls = INTERVENTIONS.get(intervention)
    if cls is None:
        raise AdapterError(f"unknown pyreft intervention type {intervention!r}")
    module = cls(embed_dim=hidden, low_rank_dimension=rank, dtype=torch.float32, add_bias=add_bias)
    return sum(p.numel() for p in module.parameters())


def recipe_adapter_params(recipe: dict, config: LlavaConfig) -> tuple[int, dict[str, int]]:
    """(adapter parameters, base parameters made trainable per component) for a recipe on this base."""
    method = recipe["method"]
    text = config.text_config
    none = dict.fromkeys(COMPONENTS, 0)
    if method == "reft":
        r = recipe["reft"]
        layers = select_layers(r.get("layers", "all"), text.num_hidden_layers)
        per_layer = 1 if r.get("share_weights", True) else len(parse_positions(r["positions"]))
        size = reft_intervention_size(r.get("intervention", "LoreftIntervention"), text.hidden_size, int(r["rank"]))
        return size * len(layers) * per_layer, none
    if method == "full":
        totals = component_totals(skeleton(config))
        chosen = recipe["full"].get("trainable", ["language_model", "projector"])
        return 0, {c: (totals[c] if c in chosen else 0) for c in COMPONENTS}
    count = 0
    for stage in ("prefix", "lora"):
        if stage in recipe and method in (stage, "pt-lora"):
            count += _peft_params(_peft_config(stage, recipe[stage]), config)
    return count, none


def _peft_config(stage: str, spec: dict):
    from peft import LoraConfig, PrefixTuningConfig, TaskType

    if stage == "lora":
        return LoraConfig(r=int(spec["r"]), lora_alpha=int(spec["alpha"]), lora_dropout=float(spec.get("dropout", 0)),
                          target_modules=list(spec["target_modules"]), task_type=TaskType.CAUSAL_LM)
    return PrefixTuningConfig(num_virtual_tokens=int(spec["num_virtual_tokens"]), task_type=TaskType.CAUSAL_LM)


def _peft_params(peft_config, config: LlavaConfig) -> int:
    from peft.tuners.prefix_tuning import PrefixTuningConfig

    if isinstance(peft_config, PrefixTuningConfig):  # one key and one value vector per layer and virtual token
        text = config.text_config
        kv_dim = text.hidden_size // text.num_attention_heads * text.num_key_value_heads
        return peft_config.num_virtual_tokens * text.num_hidden_layers * 2 * kv_dim
    from peft import get_peft_model

    model = get_peft_model(skeleton(config), peft_config)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_file_params(folder: str | Path) -> tuple[str, int]:
    """(adapter type, parameter count) of a saved adapter, read from its files without the base model."""
    path = Path(folder)
    kind = detect_adapter_type(path)
    if kind == "pyreft":  # counted on the modules the files describe: the files also hold buffers
        from vlm_peft_bench.adapters.reft import load_intervention_state, read_reft_config

        total = 0
        for spec in read_reft_config(path):
            state = load_intervention_state(path / f"intkey_{spec.key}.bin")
            total += reft_intervention_size(spec.intervention_type, spec.embed_dim, spec.rank,
                                            add_bias="proj_layer.bias" in state)
        return kind, total
    files = sorted(path.rglob("*.safetensors") if kind == "pt-lora" else path.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"{path}: no .safetensors weights to count")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                total += int(torch.Size(handle.get_slice(key).get_shape()).numel())
    return kind, total


def account(base: str, recipe: dict | None = None, adapter: str | None = None) -> dict:
    """The full report printed by `vlm-peft-bench params`."""
    config = base_config(base)
    totals = component_totals(skeleton(config))
    total = sum(totals.values())
    trainable_base = dict.fromkeys(COMPONENTS, 0)
    adapter_params, source = 0, None
    if recipe is not None:
        adapter_params, trainable_base = recipe_adapter_params(recipe, config)
        source = {"recipe": recipe["name"]}
    elif adapter is not None:
        kind, adapter_params = adapter_file_params(adapter)
        if kind == "full":  # fully fine-tuned weights: what they replace is what was trained
            adapter_params, trainable_base = 0, _full_components(adapter, config)
        source = {"adapter": str(adapter), "adapter_type": kind}
    trainable = adapter_params + sum(trainable_base.values())
    components = {c: {"total": totals[c], "trainable": trainable_base[c]} for c in COMPONENTS}
    components["adapter"] = {"total": adapter_params, "trainable": adapter_params}
    return {
        "base": base, **(source or {}), "total": total, "trainable": trainable,
        "fraction": trainable / total, "percent": round(100 * trainable / total, 6),
        "components": components, "definition": DEFINITION,
    }


def _full_components(folder: str | Path, config: LlavaConfig) -> dict[str, int]:
    model = skeleton(config)
    prefixes = native_prefixes(model)
    shapes = {n: p.numel() for n, p in model.named_parameters()}
    counts = dict.fromkeys(COMPONENTS, 0)
    for key in native_names(Path(folder), read_full_shapes(Path(folder)), model).values():
        if key in shapes:
            counts[component_of(key, prefixes)] += shapes[key]
    return counts


def format_report(report: dict) -> str:
    lines = [f"base {report['base']}: {report['trainable']:,} trainable of {report['total']:,} "
             f"({report['percent']:.4f}%)"]
    for name, c in report["components"].items():
        lines.append(f"  {name:15s} total {c['total']:>14,}  trainable {c['trainable']:>14,}")
    return "\n".join(lines)


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)
