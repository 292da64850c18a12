"""peft adapters (LoRA, DoRA, IA3, LoHa, LoKr, ...) on the native nanoLLaVA model, checked before use."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vlm_peft_bench.adapters.detect import AdapterError

PROMPT_LEARNING = {"PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING", "ADAPTION_PROMPT", "MULTITASK_PROMPT_TUNING"}
MERGEABLE = {"LORA", "LOHA", "LOKR", "IA3", "OFT", "BOFT", "VERA", "ADALORA"}


def read_adapter_config(folder: Path) -> dict:
    path = folder / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AdapterError(f"{path}: unreadable ({err})") from err
    if "peft_type" not in config:
        raise AdapterError(f"{path}: no `peft_type`; not a peft adapter config")
    return config


def read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors, read safely, with NaN/inf refused."""
    st, binary = folder / "adapter_model.safetensors", folder / "adapter_model.bin"
    try:
        if st.is_file():
            state = load_file(str(st))
        elif binary.is_file():
            state = torch.load(binary, map_location="cpu", weights_only=True)
        else:
            raise AdapterError(f"{folder}: no adapter_model.safetensors (or adapter_model.bin)")
    except (SafetensorError, RuntimeError, EOFError, OSError) as err:
        raise AdapterError(f"{folder}: adapter weights unreadable, truncated or corrupt ({err})") from err
    except AdapterError:
        raise
    except Exception as err:
        raise AdapterError(f"{folder}: adapter weights refused ({type(err).__name__}: {err})") from err
    for name, tensor in state.items():
        if not torch.is_tensor(tensor):
            raise AdapterError(f"{folder}: entry {name!r} is not a tensor")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AdapterError(f"{folder}: tensor {name!r} holds NaN or infinite values")
    return state


def check_shapes(model: torch.nn.Module, config: dict, state: dict[str, torch.Tensor], folder: Path) -> None:
    """LoRA-style weights must fit the modules they adapt (catches adapters made for another base)."""
    if config["peft_type"] != "LORA":
        return
    modules = dict(model.named_modules())
    for key, tensor in state.items():
        if ".lora_A." not in key and ".lora_B." not in key:
            continue
        target = key.split(".lora_")[0].removeprefix("base_model.model.")
        module = modules.get(target)
        if module is None or not hasattr(module, "in_features"):
            raise AdapterError(f"{folder}: adapts {target!r}, which this model does not have: another base model?")
        expected = module.in_features if ".lora_A." in key else module.out_features
        got = tensor.shape[1] if ".lora_A." in key else tensor.shape[0]
        if got != expected:
            raise AdapterError(f"{folder}: {key} has shape {tuple(tensor.shape)}, but {target} has "
                               f"{module.in_features} inputs and {module.out_features} outputs: another base model?")


def load_peft(model: torch.nn.Module, folder: Path, merge: bool = False) -> torch.nn.Module:
    """The model with the adapter applied (merged into the weights when asked and possible)."""
    from peft import PeftModel

    config = read_adapter_config(folder)
    kind = str(config["peft_type"]).upper()
    if kind in PROMPT_LEARNING:
        raise AdapterError(f"{folder}: {kind} adapters are not supported on nanoLLaVA (prefix-tuning is)")
    state = read_adapter_weights(folder)
    check_shapes(model, config, state, folder)
    try:
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except Exception as err:
        raise AdapterError(f"{folder}: peft could not apply this adapter ({type(err).__name__}: {err})") from err
    if merge:
        if kind not in MERGEABLE:
            raise AdapterError(f"{folder}: merge_lora=true, but {kind} adapters cannot be merged")
        return wrapped.merge_and_unload()
    return wrapped.base_model.model  # the Llava model with the adapter layers injected
