"""What each recipe trains and how it is saved: ReFT interventions, LoRA, or the language model + projector.

Each `prepare_*` returns a `Method`: the parameter groups for AdamW, a context for each forward (ReFT's
positions), and a `save(folder)` that writes the adapter in its library's own format (pyreft's
`ReftModel.save` format, written by `reft_files.py` without pyreft; peft's `save_pretrained`; safetensors for full
weights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlm_peft_bench.adapters.accounting import component_of
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.interventions import INTERVENTIONS
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.recipes import select_layers
from vlm_peft_bench.adapters.reft import InterventionSpec, ReftAdapter
from vlm_peft_bench.adapters.reft_files import ReftEntry, layer_component, save_reft_folder
from vlm_peft_bench.nanollava.layouts import native_module, native_prefixes


@dataclass
class Method:
    model: torch.nn.Module
    param_groups: list[dict]
    save: Callable[[Path], None]
    forward_context: Callable[[torch.Tensor, list[int]], contextlib.AbstractContextManager]
    reft: ReftAdapter | None = None


def _no_context(_mask, _lengths):
    return contextlib.nullcontext()


def prepare(recipe: dict, model: torch.nn.Module, overrides: dict) -> list[Method]:
    """The training stages of a recipe, in order (two for PT-PEFT: the prefix first, then LoRA behind it)."""
    method = recipe["method"]
    if method == "reft":
        return [prepare_reft(recipe, model, overrides)]
    if method == "lora":
        return [prepare_lora(recipe, model, overrides)]
    if method == "full":
        return [prepare_full(recipe, model, overrides)]
    if method == "prefix":
        return [prepare_prefix(recipe, model)]
    if method == "pt-lora":
        return prepare_pt_lora(recipe, model, overrides)
    raise AdapterError(f"training method {method!r} is not implemented")


class PrefixModel(torch.nn.Module):
    """A trainable prefix in front of a (frozen or LoRA-carrying) model, applied exactly as evaluation does."""

    def __init__(self, model: torch.nn.Module, num_virtual_tokens: int, init: torch.Tensor | None = None):
        super().__init__()
        from vlm_peft_bench.adapters.prefix import PrefixAdapter

        text = _config(model).text_config
        width = text.num_hidden_layers * 2 * text.hidden_size
        param = next(model.parameters())
        start = init if init is not None else torch.randn(num_virtual_tokens, width)  # peft: nn.Embedding's N(0, 1)
        self.model = model
        self.embeddings = torch.nn.Parameter(start.to(param.device, param.dtype).clone())
        self.adapter = PrefixAdapter(model, self.embeddings, text.num_hidden_layers, text.num_attention_heads)

    @property
    def config(self):
        return _config(self.model)

    def forward(self, **inputs):
        return self.adapter.forward(**inputs)

    def generate(self, **kwargs):
        return self.adapter.generate(**kwargs)


def _config(model: torch.nn.Module):
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def save_prefix(folder: Path, prefix: PrefixModel) -> None:
    """peft's own prefix-tuning format: adapter_config.json + `prompt_embeddings` in safetensors."""
    from peft import PrefixTuningConfig, TaskType

    text = prefix.config.text_config
    folder.mkdir(parents=True, exist_ok=True)
    PrefixTuningConfig(num_virtual_tokens=prefix.embeddings.shape[0], task_type=TaskType.CAUSAL_LM,
                       num_layers=text.num_hidden_layers, token_dim=text.hidden_size,
                       num_attention_heads=text.num_attention_heads, num_transformer_submodules=1,
                       ).save_pretrained(str(folder))
    save_file({"prompt_embeddings": prefix.embeddings.detach().float().cpu().contiguous()},
              str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})


def prepare_prefix(recipe: dict, model: torch.nn.Module) -> Method:
    model.requires_grad_(False)
    prefix = PrefixModel(model, int(recipe["prefix"]["num_virtual_tokens"]))
    wd = float(recipe.get("train", {}).get("weight_decay", 0.0))
    return Method(prefix, [{"params": [prefix.embeddings], "weight_decay": wd}],
                  lambda folder: save_prefix(folder, prefix), _no_context)


def prepare_pt_lora(recipe: dict, model: torch.nn.Module, overrides: dict) -> list[Method]:
    """Stage 1 trains the prefix; stage 2 freezes it and trains LoRA behind it (built when stage 2 starts)."""
    first = prepare_prefix(recipe, model)

    def second() -> Method:
        lora = prepare_lora({"lora": recipe["lora"], "train": recipe.get("train", {})}, model, overrides)
        prefix = PrefixModel(lora.model, first.model.embeddings.shape[0], init=first.model.embeddings.detach())
        prefix.embeddings.requires_grad_(False)

        def save(folder: Path) -> None:
            save_prefix(folder / "prefix", prefix)
            lora.save(folder / "lora")

        return Method(prefix, lora.param_groups, save, _no_context)

    return [first, second]


def prepare_reft(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    spec = dict(recipe["reft"], **{k: v for k, v in overrides.items() if k in ("rank", "layers", "positions")})
    text = model.config.text_config
    layers = select_layers(spec.get("layers", "all"), text.num_hidden_layers)
    positions = spec["positions"]
    share = bool(spec.get("share_weights", True))
    groups = 1 if share else len(parse_positions(positions))
    name = spec.get("intervention", "LoreftIntervention")
    cls = INTERVENTIONS.get(name)
    if cls is None:
        raise AdapterError(f"unknown pyreft intervention type {name!r} (known: {', '.join(INTERVENTIONS)})")
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
        entries = [ReftEntry(s.layer, layer_component(s.layer), s.rank, m)
                   for s, m in zip(specs, modules)]
        save_reft_folder(folder, entries, positions, share)

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
    # save_embedding_layers=False: peft would otherwise look up the base model's config on the Hub
    return Method(peft_model, [{"params": params, "weight_decay": wd}],
                  lambda folder: peft_model.save_pretrained(str(folder), save_embedding_layers=False), _no_context)


def prepare_full(recipe: dict, model: torch.nn.Module, overrides: dict) -> Method:
    chosen = set(recipe["full"].get("trainable", ["language_model", "projector"]))
    prefixes = native_prefixes(model)
    for name, p in model.named_parameters():
        p.requires_grad_(component_of(name, prefixes) in chosen)
    if recipe["full"].get("gradient_checkpointing"):
        native_module(model, "text").gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
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
