"""peft adapters (LoRA, DoRA, IA3, LoHa, LoKr, ...) on the native nanoLLaVA model, checked before use."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.nanollava.layouts import LayoutError, native_layout, rename, to_native

PROMPT_LEARNING = {"PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING", "ADAPTION_PROMPT", "MULTITASK_PROMPT_TUNING"}
MERGEABLE = {"LORA", "LOHA", "LOKR", "IA3", "OFT", "BOFT", "VERA", "ADALORA"}
KEY_PREFIX = "base_model.model."  # peft's saved keys: this, the adapted module's name, the tuner's parameter


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


def _tuner_token(kind: str) -> str | None:
    """What separates a saved key's module name from the tuner's parameter (`.lora_`, `.ia3_`, `.hada_`, ...)."""
    from peft import PeftType
    from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING

    try:
        return "." + PEFT_TYPE_TO_PREFIX_MAPPING[PeftType(kind)]
    except (KeyError, ValueError):
        return None


def _matches(spec, name: str) -> bool:
    """Whether a peft module spec (a regex string, or names matched as suffixes) selects module `name`."""
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return any(name == entry or name.endswith("." + entry) for entry in spec or ())


def native_names(model: torch.nn.Module, config: dict, state: dict[str, torch.Tensor],
                 folder: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """The adapter's config and weights with the module names of whichever nanoLLaVA layout it was saved under
    (original, transformers 4.45, 4.52-4.57, 5) renamed to the installed model's, or None when they already are.

    The config then names exactly the modules the saved weights adapt (`target_modules`: a regex or a name written
    for another layout may match other modules, or none, here), and likewise IA3's `feedforward_modules` and
    `modules_to_save`; rank and alpha patterns are resolved per adapted module."""
    from peft.utils.other import get_pattern_key

    token = _tuner_token(str(config["peft_type"]).upper())
    inner = [k[len(KEY_PREFIX):] for k in state if k.startswith(KEY_PREFIX)]
    module_of = {k: k.split(token)[0] if token and token in k else k for k in inner}  # what a tuner key adapts
    try:
        source, names = to_native(dict.fromkeys(module_of.values()), model)
    except LayoutError as err:
        raise AdapterError(f"{folder}: {err}") from err
    if all(k == v for k, v in names.items()):
        return None
    if token is None:
        raise AdapterError(f"{folder}: cannot rename a {config['peft_type']} adapter's modules to this model's names")
    adapted = {m: names[m] for k, m in module_of.items() if k != m}
    saved = set()  # modules_to_save: whole modules saved under their own names
    for key in (k for k, m in module_of.items() if k == m):
        parts = key.split(".")
        module = next((".".join(parts[:end]) for end in range(1, len(parts))
                       if _matches(config.get("modules_to_save"), ".".join(parts[:end]))), None)
        if module is not None:
            saved.add(rename(module, source, native_layout(model)))
    new = dict(config, target_modules=sorted(adapted.values()), modules_to_save=sorted(saved) or
               config.get("modules_to_save"))
    new.update({f: None for f in ("exclude_modules", "layers_to_transform", "layers_pattern") if f in config})
    if config.get("feedforward_modules") is not None:  # IA3
        new["feedforward_modules"] = sorted(n for s, n in adapted.items() if _matches(config["feedforward_modules"], s))
    for field in ("rank_pattern", "alpha_pattern"):
        if field not in config:
            continue
        pattern = config[field] or {}
        chosen = {native: get_pattern_key(list(pattern), src) for src, native in adapted.items()}
        new[field] = {re.escape(native): pattern[key] for native, key in chosen.items() if key in pattern}
    native = {KEY_PREFIX + k: KEY_PREFIX + names[m] + k[len(m):] for k, m in module_of.items()}
    return new, {native.get(k, k): t for k, t in state.items()}


def checked_peft(model: torch.nn.Module, folder: Path) -> tuple[dict, dict[str, torch.Tensor], bool]:
    """Every check `load_peft` makes before peft runs (the model may be on the meta device): (config, weights, under
    the installed model's names, and whether they had to be renamed from another layout)."""
    config = read_adapter_config(folder)
    kind = str(config["peft_type"]).upper()
    if kind in PROMPT_LEARNING:
        raise AdapterError(f"{folder}: {kind} adapters are not supported on nanoLLaVA (prefix-tuning is)")
    state = read_adapter_weights(folder)
    renamed = native_names(model, config, state, folder)
    if renamed is not None:
        config, state = renamed
    check_shapes(model, config, state, folder)
    return config, state, renamed is not None


def load_peft(model: torch.nn.Module, folder: Path, merge: bool = False) -> torch.nn.Module:
    """The model with the adapter applied (merged into the weights when asked and possible)."""
    from peft import PeftModel

    config, state, renamed = checked_peft(model, folder)
    kind = str(config["peft_type"]).upper()
    with tempfile.TemporaryDirectory(prefix="vlm-peft-bench-adapter-") as tmp:
        source = folder
        if renamed:  # peft loads from a folder: the renamed copy, deleted once loaded
            source = Path(tmp)
            (source / "adapter_config.json").write_text(json.dumps(config, indent=2))
            save_file({k: t.contiguous() for k, t in state.items()}, str(source / "adapter_model.safetensors"))
        try:
            wrapped = PeftModel.from_pretrained(model, str(source), is_trainable=False)
        except Exception as err:
            raise AdapterError(f"{folder}: peft could not apply this adapter ({type(err).__name__}: {err})") from err
    if merge:
        if kind not in MERGEABLE:
            raise AdapterError(f"{folder}: merge_lora=true, but {kind} adapters cannot be merged")
        return wrapped.merge_and_unload()
    return wrapped.base_model.model  # the Llava model with the adapter layers injected
