"""Parameter accounting's building blocks: the base on the meta device, its components and their sizes, one
intervention's size. What each method trains is counted by its family (`vlm_peft_bench.methods`), and the report
`vlm-peft-bench params` prints is put together in `methods/params.py`.

Definition (used everywhere, the leaderboard included; in one line: `methods.table.PARAMS_DEFINITION`):

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

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.interventions import INTERVENTIONS
from vlm_peft_bench.nanollava.checkpoint import (
    config_from_original,
    is_original_config,
    native_prefixes,
    read_config,
)
from vlm_peft_bench.nanollava.config import NANOLLAVA_IMAGE_TOKEN_ID, nanollava_config
from vlm_peft_bench.nanollava.loading import resolve_pretrained

COMPONENTS = ("vision_tower", "projector", "language_model")


def base_config(base: str) -> LlavaConfig:
    """`nanollava` (the published architecture), `nanollava-tiny`, or a model folder (its config.json only)."""
    if base == "nanollava":
        return nanollava_config()
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
    cls = INTERVENTIONS.get(intervention)
    if cls is None:
        raise AdapterError(f"unknown pyreft intervention type {intervention!r}")
    module = cls(embed_dim=hidden, low_rank_dimension=rank, dtype=torch.float32, add_bias=add_bias)
    return sum(p.numel() for p in module.parameters())
