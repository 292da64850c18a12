"""What each recipe trains and how it is saved: ReFT interventions, LoRA, or the language model + projector.

Each `prepare_*` returns a `Method`: the parameter groups for AdamW, a context for each forward (ReFT's
positions), and a `save(folder)` that writes the adapter in its library's own format (pyreft's
`ReftModel.save`, peft's `save_pretrained`, safetensors for full weights).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlm_peft_bench.adapters.accounting import component_of
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.recipes import select_layers
from vlm_peft_bench.adapters.reft import META_FILE, InterventionSpec, ReftAdapter
from vlm_peft_bench.nanollava.checkpoint import native_prefixes


@dataclass
class Method:
    model: torch.nn.Module
    param_groups: list[dict]
    save: Callable[[Path], None]
    forward_context: Callable[[torch.Tensor, list[int]], contextlib.AbstractContextManager]
    reft: ReftAdapter | None = None


def _no_context(_mask, _lengths):
    return contextlib.nullcontext()


def prepare(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    method = recipe["method"]
    if method == "reft":
        return prepare_reft(recipe, model, overrides)
    if method == "lora":
        return prepare_lora(recipe, model, overrides)
    if method == "full":
        return prepare_full(recipe, model, overrides)
    raise AdapterError(f"training method {method!r} is not implemented yet (reft, lora and full are)")


def prepare_reft(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    import pyreft

    spec = dict(recipe["reft"], **{k: v for k, v in overrides.items() if k in ("rank", "layers", "positions")})
    text = model.config.text_config
    layers = select_layers(spec.get("layers", "all"), text.num_hidden_layers)
    positions = spec["positions"]
    share = bool(spec.get("share_weights", True))
    groups = 1 if share else len(parse_positions(positions))
    cls = getattr(pyreft, spec.get("intervention", "LoreftIntervention"))
    dtype = next(model.parameters()).dtype
    specs, modules = [], []
    for _ in range(groups):  # pyreft's order when weights are not shared: group by group, layers within
        for layer in layers:
            specs.append(InterventionSpec(f"layer{layer}", layer, "output", cls.__name__, int(spec["rank"]),
                                          text.hidden_size))
            modules.append(cls(embed_dim=text.hidden_size, low_rank_dimension=int(spec["rank"]), dtype=dtype,
                               dropout=float(spec.get("dropout", 0.0)), add_bias=True))
    device = next(model.parameters()).device
    modules = [m.to(device).train() for m in modules]
    model.requires_grad_(False)
    # Registered on the model so that DDP (several processes) sees and synchronises their gradients.
    model.add_module("reft_interventions", torch.nn.ModuleList(modules))
    adapter = ReftAdapter(model, specs, modules, positions, share).attach()
    params = [p for m in modules for p in m.parameters()]
    # No weight decay on interventions: AdamW's decay zeroes LoReFT's orthogonal rotation.
    groups_ = [{"params": params, "weight_decay": 0.0}]

    def save(folder: Path) -> None:
        text_prefix = native_prefixes(model)["text"]
        reps = [{"layer": s.layer, "component": f"{text_prefix}layers[{s.layer}].output",
                 "low_rank_dimension": s.rank, "intervention": m} for s, m in zip(specs, modules)]
        reft_model = pyreft.ReftModel(pyreft.ReftConfig(representations=reps), model)
        reft_model.save(str(folder))
        (folder / META_FILE).write_text(json.dumps({"positions": positions, "share_weights": share}, indent=2))

    def context(mask: torch.Tensor, lengths: list[int]):
        return adapter.intervene(mask, lengths, first_forward_only=False)

    return Method(model, groups_, save, context, adapter)


def prepare_lora(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    from peft import LoraConfig, get_peft_model

    spec = dict(recipe["lora"], **{k: v for k, v in overrides.items() if k in ("r", "alpha")})
    if "rank" in overrides:
        spec["r"] = overrides["rank"]
    config = LoraConfig(r=int(spec["r"]), lora_alpha=int(spec["alpha"]), lora_dropout=float(spec.get("dropout", 0)),
                        target_modules=list(spec["target_modules"]))
    peft_model = get_peft_model(model, config)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    wd = float(recipe.get("train", {}).get("weight_decay", 0.0))
    return Method(peft_model, [{"params": params, "weight_decay": wd}],
                  lambda folder: peft_model.save_pretrained(str(folder)), _no_context)


def prepare_full(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    chosen = set(recipe["full"].get("trainable", ["language_model", "projector"]))
    prefixes = native_prefixes(model)
    for name, p in model.named_parameters():
        p.requires_grad_(component_of(name, prefixes) in chosen)
    if recipe["full"].get("gradient_checkpointing"):
        model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    wd = float(recipe.get("train", {}).get("weight_decay", 0.01))

    def save(folder: Path) -> None:
        state = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        model.config.to_json_file(str(folder / "config.json"))

    return Method(model, [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                  save, _no_context)
