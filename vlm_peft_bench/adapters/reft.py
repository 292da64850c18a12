"""pyreft interventions applied to the native nanoLLaVA model with plain forward hooks.

Reads the folder `ReftModel.save` writes (config.json + one `intkey_<key>.bin` per intervention), rebuilds
each intervention with our reimplementation of its pyreft class (`interventions.py`: same arithmetic, same state
dict; pyreft itself is not needed), and applies it to the residual stream of its layer at the prompt
positions given by `positions` (pyreft notation, plus our middle group), shifted by each row's left padding.
Only the prompt forward is intervened: tokens produced during cached decoding are not, as with pyreft's
`intervene_on_prompt=True`. The arithmetic is pyreft's (its modules' forward, reproduced exactly).

Interventions are kept and computed in float32 whatever the model's dtype: pyreft's orthogonal parametrisation
needs a QR decomposition that torch does not implement in bfloat16, and a saved LoReFT is float32. With a bf16 or
fp16 model, the intervened hidden states are converted to float32 and back.

Position settings are not part of pyreft's files; we store them in `vlm_peft_bench.json` beside them
(`positions`, `share_weights`). For a third-party folder without it, pass `positions=` to `vlreft`.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.interventions import INTERVENTIONS, evaluation_function
from vlm_peft_bench.adapters.positions import parse_positions, position_groups
from vlm_peft_bench.adapters.reft_files import META_FILE, representation_key
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
    if cls is None:
        raise AdapterError(f"{source}: unknown pyreft intervention type {spec.intervention_type!r}")
    for name, tensor in state.items():
        if not torch.is_tensor(tensor):
            raise AdapterError(f"{source}: entry {name!r} is not a tensor")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{source}: tensor {name!r} holds NaN or infinite values")
    # Constructor settings pyreft does not save, read back from the weights (NoReFT's optional bias).
    module = cls(embed_dim=spec.embed_dim, low_rank_dimension=spec.rank, dtype=dtype,
                 add_bias="proj_layer.bias" in state)
    try:
        module.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    except Exception as err:
        raise AdapterError(f"{source}: weights do not fit a {spec.intervention_type} of rank {spec.rank} "
                           f"on hidden size {spec.embed_dim} ({err})") from err
    return module.to(dtype).eval()


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


@dataclass
class _Active:
    positions: _Locations | None = None  # where to intervene in the current forward, per position group
    first_forward_only: bool = False


@dataclass
class ReftAdapter:
    """Interventions hooked into a model; `intervene()` says where, per batch."""

    model: torch.nn.Module
    specs: list[InterventionSpec]
    modules: list[torch.nn.Module]
    positions: str
    share_weights: bool
    active: _Active = field(default_factory=_Active)
    hooks: list = field(default_factory=list)  # (module, forward hook) pairs, installed by `intervene`
    parametrized: bool = False  # whether any intervention is still parametrised (training)
    language_model: torch.nn.Module | None = None
    groups: dict[str, int] = field(default_factory=dict)  # the parsed positions
    handles: list = field(default_factory=list)

    def group_of(self, index: int) -> int:
        """Which position group intervention `index` serves (pyreft orders unshared ones group by group)."""
        if self.share_weights:
            return -1
        return index // (len(self.specs) // len(parse_positions(self.positions)))

    def attach(self) -> ReftAdapter:
        """Check that every intervention's layer exists and prepare its hook. Hooks are installed only while
        `intervene` is active and removed after the forward they serve, so that decoding steps and other users of
        the model run without them."""
        self.language_model = _language_model(self.model)  # found once: the search asks every module
        self.groups = parse_positions(self.positions)
        decoder = self.language_model.layers
        self.hooks = []
        for index, (spec, module) in enumerate(zip(self.specs, self.modules)):
            if spec.layer >= len(decoder):
                raise AdapterError(f"intervention on layer {spec.layer}, but the model has {len(decoder)} layers")
            target = decoder[spec.layer]
            for part in spec.where.split(".")[:-1]:
                target = getattr(target, part)
            self.hooks.append((target, self._hook(module, self.group_of(index))))
        self.parametrized = any(parametrize.is_parametrized(m) for module in self.modules for m in module.modules())
        return self

    def detach(self) -> None:
        """Remove the installed hooks (none are left outside `intervene`)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _hook(self, module: torch.nn.Module, group: int):
        fast = evaluation_function(module)  # None for a trainable intervention

        def hook(_mod, _inputs, output):
            if self.active.positions is None:
                return output
            hidden = output[0] if isinstance(output, tuple) else output
            flat = self.active.positions.flat(group)
            if flat.numel():
                if torch.is_grad_enabled():  # training: keep the layer's output intact for autograd
                    hidden = hidden.clone()
                rows = hidden.view(-1, hidden.shape[-1])  # (batch x positions, hidden), sharing hidden's memory
                picked = rows.index_select(0, flat)
                if picked.dtype != torch.float32:  # interventions compute in float32 (the module docstring)
                    picked = picked.float()
                edited = (fast if fast is not None and not torch.is_grad_enabled() else module)(picked)
                rows.index_copy_(0, flat, edited if edited.dtype == hidden.dtype else edited.to(hidden.dtype))
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook

    def _after_forward(self, _mod, _inputs, _output):
        if self.active.first_forward_only:
            self.active.positions = None
            self.detach()  # decoding steps run without hooks

    @contextlib.contextmanager
    def intervene(self, attention_mask: torch.Tensor, prompt_lengths: list[int], first_forward_only: bool,
                  offsets: list[int] | None = None):
        """Intervene at the configured prompt positions of each (left-padded) row during the block; `offsets`: the
        prompt position of each row's first real input token, when the input is a later part of the prompt (the
        rest of it in a cache)."""
        self.active.positions = self.locations(attention_mask, prompt_lengths, offsets)
        self.active.first_forward_only = first_forward_only
        self.detach()
        self.handles = [target.register_forward_hook(hook) for target, hook in self.hooks]
        if first_forward_only:
            self.handles.append(self.language_model.register_forward_hook(self._after_forward))
        try:
            # In training, LoReFT's rotation is an orthogonal parametrisation, recomputed (a QR) at every access of
            # its weight, twice per layer per forward; within one forward it does not change, so compute it once.
            with parametrize.cached() if self.parametrized else contextlib.nullcontext():
                yield
        finally:
            self.active.positions = None
            self.detach()

    def locations(self, attention_mask: torch.Tensor, prompt_lengths: list[int], offsets: list[int] | None = None
                  ) -> _Locations:
        """Where to intervene in this input: each row's prompt positions (counted on its whole prompt) that fall in
        the input, as (row, column) pairs per position group. Without `offsets`, the input starts at the prompt's
        first token; with them, row b's input holds prompt positions offsets[b] onwards, as many as it has real
        tokens."""
        pads = attention_mask.argmax(1).tolist()  # left padding per row: the first real token (argmax: the first 1)
        width = attention_mask.shape[1]
        starts = offsets or [0] * len(prompt_lengths)
        stops = [s + int(n) for s, n in zip(starts, attention_mask.sum(1).tolist())] if offsets else prompt_lengths

        def flat(b: int, positions: list[int]) -> list[int]:  # row b's positions as indices into (batch x width)
            return [b * width + pads[b] + p - starts[b] for p in positions if starts[b] <= p < stops[b]]

        per_row = [position_groups(self.groups, n) for n in prompt_lengths]
        groups = [[i for b in range(len(per_row)) for i in flat(b, per_row[b][g])] for g in range(len(per_row[0]))]
        union = [i for b in range(len(per_row)) for i in flat(b, [p for grp in per_row[b] for p in grp])]
        return _Locations(groups, union, width, attention_mask.device)

    def positions_before(self, prompt_length: int, end: int) -> tuple[tuple[int, ...], ...]:
        """Per position group, the intervened positions of a prompt of `prompt_length` tokens that come before
        `end`: two prompts whose first `end` tokens are equal compute the same cache for them exactly when these
        are equal too (a prefix is shared only then)."""
        return tuple(tuple(p for p in group if p < end) for group in position_groups(self.groups, prompt_length))


class _Locations:
    """Per position group (and for their union, group -1): the positions to intervene on as indices into the
    flattened (batch x width) hidden states, made once per forward (and only for the groups asked for) rather than
    in every layer's hook."""

    def __init__(self, groups: list[list[int]], union: list[int], width: int, device):
        self.width, self.device = width, device
        self.lists = {g: positions for g, positions in enumerate(groups)} | {-1: union}
        self.tensors: dict[int, torch.Tensor] = {}

    def flat(self, group: int) -> torch.Tensor:
        found = self.tensors.get(group)
        if found is None:
            found = self.tensors[group] = torch.tensor(self.lists[group], dtype=torch.long, device=self.device)
        return found

    def where(self, group: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of the group's positions."""
        flat = self.flat(group)
        return flat // self.width, flat % self.width


def _language_model(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if hasattr(module, "embed_tokens") and hasattr(module, "layers"):
            return module
    raise AdapterError("model has no decoder with `layers`")


def _decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return _language_model(model).layers


def load_reft(model: torch.nn.Module, folder: Path, positions: str | None = None,
              share_weights: bool | None = None) -> ReftAdapter:
    """Rebuild a saved pyreft intervention set, check it against the model, and hook it in."""
    specs, modules, positions, share = check_reft(model, folder, positions, share_weights)
    device = next(model.parameters()).device
    modules = [m.to(device) for m in modules]
    return ReftAdapter(model, specs, modules, positions, share).attach()


def check_reft(model: torch.nn.Module, folder: Path, positions: str | None = None, share_weights: bool | None = None
               ) -> tuple[list[InterventionSpec], list[torch.nn.Module], str, bool]:
    """Every check `load_reft` makes, the interventions rebuilt on the CPU (small); `model` may be on the meta
    device (only its names and sizes are read). (specs, modules, positions, share_weights)."""
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    positions = positions or meta.get("positions")
    if not positions:
        raise AdapterError(f"{folder}: pyreft files do not record intervention positions; pass positions=, e.g. "
                           "positions=f5+l5 (first and last 5 prompt tokens), as used at training")
    share = meta.get("share_weights", True) if share_weights is None else share_weights
    specs = read_reft_config(folder)
    hidden = _language_model(model).embed_tokens.embedding_dim
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
    return specs, modules, positions, share
