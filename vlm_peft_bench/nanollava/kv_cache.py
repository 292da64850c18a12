"""Key/value caches across transformers versions: what a forward returned, what to pass back, copies of rows.

transformers 5.24 renamed the forward's `past_key_values` argument and output to `cache` (the old name is deprecated
there); 4.45's `DynamicCache` keeps `key_cache` / `value_cache` lists, 5.x keeps `layers`. Every cache we build is
a `DynamicCache` filled layer by layer with `update`, the one way both accept.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache


def cache_argument(model: torch.nn.Module) -> str:
    """The forward's argument for a cache to continue from: `cache` from transformers 5.24, `past_key_values`
    before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out) -> Any:
    """The cache a forward returned, under either name."""
    for name in ("cache", "past_key_values"):
        if name in out and out[name] is not None:
            return out[name]
    raise ValueError("the model's forward returned no cache (use_cache was not honoured)")


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer: transformers 5's cache layers, 4.x's DynamicCache lists, or the legacy tuples."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(keys, values) for keys, values, *_ in cache]


def cache_from_layers(layers) -> DynamicCache:
    """A `DynamicCache` holding these (keys, values) per layer."""
    out = DynamicCache()
    for layer, (keys, values) in enumerate(layers):
        out.update(keys, values, layer)
    return out


def select_rows(cache, rows: torch.Tensor) -> DynamicCache:
    """A new cache holding copies of these batch rows of `cache` (rows may repeat); `cache` is left unchanged."""
    return cache_from_layers((k.index_select(0, rows), v.index_select(0, rows)) for k, v in cache_layers(cache))


def cache_bytes(cache) -> int:
    """Bytes the cache's tensors hold."""
    return sum(t.numel() * t.element_size() for pair in cache_layers(cache) for t in pair)


def logits_to_keep_argument(model: torch.nn.Module) -> str | None:
    """The forward's argument that limits the logits to the last positions (named differently across transformers
    versions), or None."""
    parameters = inspect.signature(model.forward).parameters
    return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters), None)
