"""Read nanoLLaVA checkpoints: the original published layout (Bunny's `llava-qwen2`) and native Llava ones.

The original checkpoint names its tensors after Bunny's module tree; the native model is transformers'
`LlavaForConditionalGeneration`, whose names differ between transformers versions. Tensors saved under any of
these layouts are renamed to the installed model's names (`layouts.py`), found on the instantiated model (by
which module owns what), never written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import LlavaConfig, PreTrainedModel

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.nanollava.config import NANOLLAVA_VISION, llava_config
from vlm_peft_bench.nanollava.layouts import LayoutError, native_prefixes, to_native

QWEN2_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rope_theta", "rms_norm_eps",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "sliding_window", "use_sliding_window",
)


class CheckpointError(VlmPeftBenchError, ValueError):
    """A checkpoint folder or file that cannot be used, with what is wrong and how to fix it."""


def is_original_config(config: dict) -> bool:
    """True for the published nanoLLaVA/Bunny layout (model_type `llava-qwen2`, `mm_*` fields)."""
    return config.get("model_type") != "llava" and "mm_projector_type" in config


def config_from_original(config: dict, image_token_index: int) -> LlavaConfig:
    """Native config for an original nanoLLaVA `config.json` (vision tower facts are not stored there)."""
    if config.get("mm_projector_type") != "mlp2x_gelu":
        raise CheckpointError(
            f"mm_projector_type={config.get('mm_projector_type')!r}: only nanoLLaVA's 'mlp2x_gelu' is supported"
        )
    tower = str(config.get("mm_vision_tower", ""))
    if "siglip-so400m-patch14-384" not in tower:
        raise CheckpointError(f"mm_vision_tower={tower!r}: only SigLIP so400m-patch14-384 is supported")
    text = {k: config[k] for k in QWEN2_FIELDS if k in config}
    # The published config names the vision tower but does not describe it; a `vision_config` dict (our
    # extension, used for small test checkpoints) overrides the so400m facts.
    vision = dict(NANOLLAVA_VISION, hidden_size=config.get("mm_hidden_size", NANOLLAVA_VISION["hidden_size"]))
    vision.update(config.get("vision_config") or {})
    return llava_config(text, vision, image_token_index)


def convert_state_dict(state: dict[str, torch.Tensor], model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Rename a state dict saved under any known nanoLLaVA layout (original, transformers 4.45, 4.52-4.57, 5) to
    the installed model's names. Vision-head keys the model has no module for are dropped."""
    try:
        _, names = to_native(state, model)
    except LayoutError as err:
        raise CheckpointError(f"tensors that do not belong to nanoLLaVA: {err}") from err
    head = native_prefixes(model)["vision"] + "head."
    keep = dict(model.named_parameters())
    return {names[k]: t for k, t in state.items() if not (names[k].startswith(head) and names[k] not in keep)}


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files: safetensors (single or sharded) preferred, else PyTorch .bin files."""
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if files:
            return files
    raise CheckpointError(
        f"{folder}: no weights found (expected model.safetensors, model-*.safetensors or pytorch_model*.bin)"
    )


def load_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    """Load weight files on the CPU without executing code (safetensors, or torch.load(weights_only=True))."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                state.update(load_file(str(path), device="cpu"))
            else:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
        except (SafetensorError, RuntimeError, EOFError, OSError) as err:
            raise CheckpointError(
                f"{path}: cannot read weights ({err}); the file is truncated or corrupt: download it again"
            ) from err
        except Exception as err:  # unpickling refused by weights_only, or another format
            raise CheckpointError(f"{path}: refused to load ({type(err).__name__}: {err})") from err
    return state


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{folder}: config.json is missing; this is not a model folder") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err
