"""Read nanoLLaVA checkpoints: the original published layout (Bunny's `llava-qwen2`) and our native one.

The original checkpoint names its tensors after Bunny's module tree; the native model is transformers'
`LlavaForConditionalGeneration`. Native prefixes differ between transformers versions, so they are found
on the instantiated model (by which module owns what), never written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import LlavaConfig, PreTrainedModel

from vlm_peft_bench.nanollava.config import NANOLLAVA_VISION, llava_config

ORIGINAL_TEXT_PREFIX = "model."
ORIGINAL_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
ORIGINAL_PROJECTOR_PREFIX = "model.mm_projector."
ORIGINAL_LM_HEAD = "lm_head."
ORIGINAL_PROJECTOR_LAYERS = {"0": "linear_1", "2": "linear_2"}  # nn.Sequential(Linear, GELU, Linear)
QWEN2_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rope_theta", "rms_norm_eps",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "sliding_window", "use_sliding_window",
)


class CheckpointError(ValueError):
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


def _module_name(model: torch.nn.Module, wanted: torch.nn.Module) -> str:
    for name, module in model.named_modules():
        if module is wanted:
            return name
    raise LookupError("module not found in model")


def native_prefixes(model: PreTrainedModel) -> dict[str, str]:
    """Where the text decoder, LM head, vision transformer and projector live in this transformers version."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if hasattr(module, "embed_tokens") and hasattr(module, "layers") and "text" not in found:
            found["text"] = name
        elif all(hasattr(module, a) for a in ("embeddings", "encoder", "post_layernorm")) and "vision" not in found:
            found["vision"] = name
        elif hasattr(module, "linear_1") and hasattr(module, "linear_2") and "projector" not in found:
            found["projector"] = name
    found["lm_head"] = _module_name(model, model.get_output_embeddings())
    missing = {"text", "vision", "projector"} - set(found)
    if missing:
        raise LookupError(f"model has no {sorted(missing)} module: not a Llava model?")
    return {k: (v + "." if v else "") for k, v in found.items()}


def convert_original_state_dict(state: dict[str, torch.Tensor], model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Rename an original nanoLLaVA state dict to the native model's names. Vision-head keys are dropped."""
    prefix = native_prefixes(model)
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        if key.startswith(ORIGINAL_VISION_PREFIX):
            rest = key[len(ORIGINAL_VISION_PREFIX):]
            if rest.startswith("head."):
                continue
            out[prefix["vision"] + rest] = tensor
        elif key.startswith(ORIGINAL_PROJECTOR_PREFIX):
            index, _, param = key[len(ORIGINAL_PROJECTOR_PREFIX):].partition(".")
            if index not in ORIGINAL_PROJECTOR_LAYERS:
                unknown.append(key)
                continue
            out[f"{prefix['projector']}{ORIGINAL_PROJECTOR_LAYERS[index]}.{param}"] = tensor
        elif key.startswith(ORIGINAL_LM_HEAD):
            out[prefix["lm_head"] + key[len(ORIGINAL_LM_HEAD):]] = tensor
        elif key.startswith(ORIGINAL_TEXT_PREFIX):
            out[prefix["text"] + key[len(ORIGINAL_TEXT_PREFIX):]] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{len(unknown)} tensors do not belong to nanoLLaVA, e.g. {unknown[:3]}")
    return out


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
