"""Fully fine-tuned weights (language model and projector, or any subset of the model's tensors), saved under any
nanoLLaVA layout (original, transformers 4.45, 4.52-4.57, 5): names are renamed to the installed model's."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.nanollava.layouts import LayoutError, to_native


def full_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"{folder}: fully fine-tuned weights must be .safetensors files")
    return files


def read_full_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from the safetensors headers alone (no values read)."""
    shapes = {}
    for f in full_files(folder):
        try:
            with safe_open(str(f), framework="pt") as handle:
                shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
        except (SafetensorError, OSError) as err:
            raise AdapterError(f"{f}: unreadable, truncated or corrupt ({err})") from err
    return shapes


def native_names(folder: Path, names, model: torch.nn.Module) -> dict[str, str]:
    """{saved name: the installed model's name}, whichever nanoLLaVA layout the folder was saved under."""
    try:
        return to_native(names, model)[1]
    except LayoutError as err:
        raise AdapterError(f"{folder}: {err}") from err


def check_full_shapes(folder: Path, shapes: dict[str, tuple[int, ...]], model: torch.nn.Module) -> None:
    """Every tensor must be one of the model's, with its shape (the model may be on the meta device)."""
    expected = dict(model.state_dict())
    names = native_names(folder, shapes, model)
    unknown = [k for k in shapes if names[k] not in expected]
    if unknown:
        raise AdapterError(f"{folder}: {len(unknown)} tensors this model does not have (e.g. {unknown[:2]}): "
                           "weights for another base model")
    for key, shape in shapes.items():
        if tuple(shape) != tuple(expected[names[key]].shape):
            raise AdapterError(f"{folder}: {key} has shape {tuple(shape)}, the model's is "
                               f"{tuple(expected[names[key]].shape)}: another base model?")


def read_full_values(folder: Path) -> dict[str, torch.Tensor]:
    """The weights, with NaN/inf refused."""
    state: dict[str, torch.Tensor] = {}
    for f in full_files(folder):
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as err:
            raise AdapterError(f"{f}: unreadable, truncated or corrupt ({err})") from err
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AdapterError(f"{folder}: tensor {key!r} holds NaN or infinite values")
    return state


def load_full(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Overwrite the model's tensors with the folder's safetensors weights, after checking every one."""
    shapes = read_full_shapes(folder)
    check_full_shapes(folder, shapes, model)
    names = native_names(folder, shapes, model)
    model.load_state_dict({names[k]: v for k, v in read_full_values(folder).items()}, strict=False)
    return model
