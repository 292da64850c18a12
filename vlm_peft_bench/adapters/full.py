"""Fully fine-tuned weights (language model and projector, or any subset of the model's tensors)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.nanollava.layouts import LayoutError, to_native


def load_full(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Overwrite the model's tensors with the folder's safetensors weights, after checking every one. Names saved
    under any nanoLLaVA layout (original, transformers 4.45, 4.52-4.57, 5) are renamed to the model's."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"{folder}: fully fine-tuned weights must be .safetensors files")
    expected = dict(model.state_dict())
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as err:
            raise AdapterError(f"{f}: unreadable, truncated or corrupt ({err})") from err
    state = native_state(state, model, folder)
    unknown = [k for k in state if k not in expected]
    if unknown:
        raise AdapterError(f"{folder}: {len(unknown)} tensors this model does not have (e.g. {unknown[:2]}): "
                           "weights for another base model, or saved with another transformers naming")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise AdapterError(f"{folder}: {key} has shape {tuple(tensor.shape)}, the model's is "
                               f"{tuple(expected[key].shape)}: another base model?")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AdapterError(f"{folder}: tensor {key!r} holds NaN or infinite values")
    model.load_state_dict(state, strict=False)
    return model


def native_state(state: dict, model: torch.nn.Module, folder: Path) -> dict:
    """`state` under the model's own names, from whichever nanoLLaVA layout it was saved in."""
    try:
        _, names = to_native(state, model)
    except LayoutError as err:
        raise AdapterError(f"{folder}: {err}") from err
    return {names[k]: v for k, v in state.items()}
