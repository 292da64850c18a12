"""A saved pyreft folder read and checked without pyreft: its config.json (which interventions, where), one
`intkey_<key>.bin` per intervention (loaded as plain tensors only), and our settings beside them
(`vlm_peft_bench.json`: positions, weight sharing, intervene_on). `check_reft` makes every check `load_reft`
makes and rebuilds the interventions (pyreft's classes from `interventions.py`, steering vectors from
`steering.py`) on the CPU; the model may be on the meta device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from vlm_peft_bench.adapters.detect import AdapterError, read_json_object
from vlm_peft_bench.adapters.interventions import INTERVENTIONS
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.reft_files import META_FILE, representation_key
from vlm_peft_bench.adapters.steering import STEERING
from vlm_peft_bench.nanollava.layouts import LayoutError, detect_layout

_LAYER_PATH = re.compile(r"layers\[(\d+)\]\.(output|mlp\.output|self_attn\.output)$")
_COMPONENTS = {"block_output": "output", "mlp_output": "mlp.output", "attention_output": "self_attn.output"}
_CLASS = re.compile(r"<class '([\w.]+)'>")


@dataclass
class InterventionSpec:
    key: str
    layer: int
    where: str  # "output" (block output), "mlp.output" or "self_attn.output"
    intervention_type: str
    rank: int
    embed_dim: int


def read_reft_config(folder: Path) -> list[InterventionSpec]:
    """The interventions described by a pyreft `config.json`, in pyreft's own order."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
        reps, types, dims, keys = (config[k] for k in
                                   ("representations", "intervention_types", "intervention_dimensions", "sorted_keys"))
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise AdapterError(f"{path}: not a pyreft config ({type(err).__name__}: {err})") from err
    specs, used = [], set()
    for rep, type_name, dim in zip(reps, types, dims):
        layer, component, unit, n_units, rank = rep[:5]
        rank = rank or 0  # pyvene writes none for interventions without a rank (steering vectors)
        match = _LAYER_PATH.search(component)
        if match:
            layer, where = int(match.group(1)), match.group(2)
            _check_decoder_layer(f"{component[:match.start()]}layers.{layer}", component, path)
        elif component in _COMPONENTS:
            where = _COMPONENTS[component]
        else:
            raise AdapterError(f"{path}: intervention component {component!r} is not supported (use block_output)")
        prefix = representation_key(layer, component, unit, n_units) + "#"
        key = next((k for k in keys if k.startswith(prefix) and k not in used), None)
        if key is None:
            raise AdapterError(f"{path}: no saved intervention key for {component!r}")
        used.add(key)
        cls = _CLASS.match(type_name)
        specs.append(InterventionSpec(key, int(layer), where, (cls.group(1) if cls else type_name).split(".")[-1],
                                      int(rank), int(dim)))
    return specs


def _check_decoder_layer(name: str, component: str, path: Path) -> None:
    """The component must be a decoder layer of nanoLLaVA's language model, named under any known layout (the
    original `model.layers[N]`, transformers 4.45's `language_model.model.layers[N]`, later ones'
    `model.language_model.layers[N]`): interventions are applied to the installed model's layer N whatever it is
    called there."""
    try:
        layout = detect_layout([name])
    except LayoutError as err:
        raise AdapterError(f"{path}: intervention component {component!r}: {err}") from err
    if layout.split(name)[0] != "text":
        raise AdapterError(f"{path}: intervention component {component!r} is not a layer of the language model")


def build_intervention(spec: InterventionSpec, state: dict, dtype: torch.dtype, source: Path) -> torch.nn.Module:
    cls = INTERVENTIONS.get(spec.intervention_type)
    if cls is None and spec.intervention_type not in STEERING:
        raise AdapterError(f"{source}: unknown intervention type {spec.intervention_type!r} (known: "
                           f"{', '.join([*INTERVENTIONS, *STEERING])})")
    for name, tensor in state.items():
        if not torch.is_tensor(tensor):
            raise AdapterError(f"{source}: entry {name!r} is not a tensor")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{source}: tensor {name!r} holds NaN or infinite values")
    if cls is None:
        return _steering_vector(spec, state, source)
    # Constructor settings pyreft does not save, read back from the weights (NoReFT's optional bias).
    module = cls(embed_dim=spec.embed_dim, low_rank_dimension=spec.rank, dtype=dtype,
                 add_bias="proj_layer.bias" in state)
    try:
        module.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    except Exception as err:
        raise AdapterError(f"{source}: weights do not fit a {spec.intervention_type} of rank {spec.rank} "
                           f"on hidden size {spec.embed_dim} ({err})") from err
    return module.to(dtype).eval()


def _steering_vector(spec: InterventionSpec, state: dict, source: Path) -> torch.nn.Module:
    """A steering vector's module from its saved `source_representation` (pyvene's key), in float32."""
    vector = state.get("source_representation")
    if vector is None:
        raise AdapterError(f"{source}: a {spec.intervention_type} needs its 'source_representation' (the vector)")
    if vector.numel() != spec.embed_dim:
        raise AdapterError(f"{source}: a vector of {vector.numel()} entries for hidden size {spec.embed_dim}")
    return STEERING[spec.intervention_type](spec.embed_dim, vector.float()).eval()


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """An intervention for evaluation only: parametrised weights (LoReFT's orthogonal rotation, recomputed by a QR
    at every access) replaced by their current value, and no gradients. Same numbers, computed once."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module.requires_grad_(False)


def load_intervention_state(path: Path) -> dict:
    """One `intkey_*.bin`, loaded without executing code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise AdapterError(f"{path}: refused or unreadable ({type(err).__name__}: {err}); intervention files "
                           "must hold plain tensors") from err
    if not isinstance(state, dict):
        raise AdapterError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return state


INTERVENE_ON = ("prompt", "all")



def language_model(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if hasattr(module, "embed_tokens") and hasattr(module, "layers"):
            return module
    raise AdapterError("model has no decoder with `layers`")


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return language_model(model).layers


@dataclass
class CheckedReft:
    specs: list[InterventionSpec]
    modules: list[torch.nn.Module]  # rebuilt on the CPU, frozen
    positions: str
    share_weights: bool
    intervene_on: str


def read_meta(folder: Path) -> dict:
    """Our settings beside pyreft's files (`vlm_peft_bench.json`), {} when there are none."""
    path = folder / META_FILE
    return read_json_object(path) if path.is_file() else {}


def check_reft(model: torch.nn.Module, folder: Path, positions: str | None = None, share_weights: bool | None = None
               ) -> CheckedReft:
    """Every check `load_reft` makes, the interventions rebuilt on the CPU (small); `model` may be on the meta
    device (only its names and sizes are read)."""
    meta = read_meta(folder)
    positions = positions or meta.get("positions")
    if not positions:
        raise AdapterError(f"{folder}: pyreft files do not record intervention positions; pass positions=, e.g. "
                           "positions=f5+l5 (first and last 5 prompt tokens), as used at training")
    share = meta.get("share_weights", True) if share_weights is None else share_weights
    intervene_on = meta.get("intervene_on", "prompt")
    if intervene_on not in INTERVENE_ON:
        raise AdapterError(f"{folder / META_FILE}: intervene_on={intervene_on!r}: use one of "
                           f"{', '.join(INTERVENE_ON)}")
    specs = read_reft_config(folder)
    hidden = language_model(model).embed_tokens.embedding_dim
    n_layers = len(_decoder_layers(model))
    modules = []
    for spec in specs:
        if spec.embed_dim != hidden:
            raise AdapterError(f"{folder}: intervention {spec.key} was trained for hidden size {spec.embed_dim}, "
                               f"this model's is {hidden}: the adapter belongs to another base model")
        if spec.layer >= n_layers:
            raise AdapterError(f"{folder}: intervention on layer {spec.layer}, this model has {n_layers} layers: "
                               "the adapter belongs to another base model")
        path = folder / f"intkey_{spec.key}.bin"
        if not path.is_file():
            raise AdapterError(f"{folder}: missing {path.name}")
        modules.append(frozen(build_intervention(spec, load_intervention_state(path), torch.float32, path)))
    if not share:
        n_groups = len(parse_positions(positions))
        if len(specs) % n_groups:
            raise AdapterError(f"{folder}: {len(specs)} interventions cannot be split into {n_groups} position "
                               f"groups ({positions}) without shared weights")
    return CheckedReft(specs, modules, positions, share, intervene_on)
