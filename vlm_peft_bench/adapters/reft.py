"""pyreft interventions applied to the native nanoLLaVA model with plain forward hooks.

Reads the folder `ReftModel.save` writes (config.json + one `intkey_<key>.bin` per intervention), rebuilds
each intervention with our reimplementation of its pyreft class (`interventions.py`: same arithmetic, same state
dict; pyreft itself is not needed), and applies it to the residual stream of its layer at the prompt
positions given by `positions` (pyreft notation, plus our middle group), shifted by each row's left padding.
By default only the prompt is intervened on: tokens produced during cached decoding are not, as with pyreft's
`intervene_on_prompt=True`. With `intervene_on="all"` (recorded in the folder's settings; the VL-ReFT report's
future work) every token after the prompt is intervened on too: each generated token during decoding, and the
continuation's tokens in a forward over prompt + continuation (training, log-likelihoods), by the last position
group's intervention (the only one with shared weights). The arithmetic is pyreft's (its modules' forward,
reproduced exactly). Steering vectors (`steering.py`) are interventions of the same kind, without parameters.

Interventions are kept and computed in float32 whatever the model's dtype: pyreft's orthogonal parametrisation
needs a QR decomposition that torch does not implement in bfloat16, and a saved LoReFT is float32. With a bf16 or
fp16 model, the intervened hidden states are converted to float32 and back.

Position settings are not part of pyreft's files; we store them in `vlm_peft_bench.json` beside them
(`positions`, `share_weights`, `intervene_on`). For a third-party folder without it, pass `positions=` to
`vlreft`. The folder is read and checked by `reft_folder.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.interventions import evaluation_function
from vlm_peft_bench.adapters.positions import parse_positions, position_groups
from vlm_peft_bench.adapters.reft_folder import INTERVENE_ON, InterventionSpec, check_reft, language_model
from vlm_peft_bench.adapters.steering import SteeringIntervention


@dataclass
class _Active:
    positions: _Locations | None = None  # where to intervene in the current forward, per position group
    first_forward_only: bool = False
    generating: bool = False  # decoding with intervene_on="all": every position of each forward, generation group


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
    intervene_on: str = "prompt"  # or "all": generated (and continuation) tokens too
    weight: float = 1.0  # in a sum of edits (`reft_sum.py`): this adapter's edit is added times this weight
    originals: dict | None = None  # in a sum of edits: each hooked module's output before any edit, by module

    @property
    def generation_group(self) -> int:
        """The position group whose interventions act on the tokens after the prompt (-1: shared weights)."""
        return -1 if self.share_weights else len(parse_positions(self.positions)) - 1

    def group_of(self, index: int) -> int:
        """Which position group intervention `index` serves (pyreft orders unshared ones group by group)."""
        if self.share_weights:
            return -1
        return index // (len(self.specs) // len(parse_positions(self.positions)))

    def attach(self) -> ReftAdapter:
        """Check that every intervention's layer exists and prepare its hook. Hooks are installed only while
        `intervene` is active and removed after the forward they serve, so that decoding steps and other users of
        the model run without them."""
        if self.intervene_on not in INTERVENE_ON:
            raise AdapterError(f"intervene_on={self.intervene_on!r}: use one of {', '.join(INTERVENE_ON)}")
        self.language_model = language_model(self.model)  # found once: the search asks every module
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

        def hook(mod, _inputs, output):
            if self.active.generating:
                return self._generated(module, fast, group, output, mod)
            if self.active.positions is None:
                return output
            hidden = output[0] if isinstance(output, tuple) else output
            flat = self.active.positions.flat(group)
            if flat.numel():
                if torch.is_grad_enabled():  # training: keep the layer's output intact for autograd
                    hidden = hidden.clone()
                rows = hidden.view(-1, hidden.shape[-1])  # (batch x positions, hidden), sharing hidden's memory
                source = rows if self.originals is None else self.originals[mod]
                picked = source.index_select(0, flat)
                if picked.dtype != torch.float32:  # interventions compute in float32 (the module docstring)
                    picked = picked.float()
                edited = (fast if fast is not None and not torch.is_grad_enabled() else module)(picked)
                if self.originals is None:
                    rows.index_copy_(0, flat, edited if edited.dtype == hidden.dtype else edited.to(hidden.dtype))
                else:  # a sum of edits: each reads the unedited states and adds its weighted edit
                    rows.index_add_(0, flat, (self.weight * (edited - picked)).to(hidden.dtype))
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
        return hook

    def _generated(self, module: torch.nn.Module, fast, group: int, output, target: torch.nn.Module):
        """A decoding step's forward with intervene_on="all": every position it holds is a generated token."""
        if group != self.generation_group:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        source = hidden if self.originals is None else self.originals[target].view_as(hidden)
        picked = source if source.dtype == torch.float32 else source.float()
        edited = (fast if fast is not None and not torch.is_grad_enabled() else module)(picked)
        if self.originals is not None:  # a sum of edits (see the prompt's hook)
            edited = hidden + (self.weight * (edited - picked)).to(hidden.dtype)
        edited = edited if edited.dtype == hidden.dtype else edited.to(hidden.dtype)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    def _after_forward(self, _mod, _inputs, _output):
        if self.active.first_forward_only:
            self.active.positions = None
            if self.intervene_on == "all":
                self.active.generating = True  # the hooks stay for the decoding steps
            else:
                self.detach()  # decoding steps run without hooks

    @contextlib.contextmanager
    def generating(self):
        """Decoding steps (one forward per generated token, the prompt in a cache) run in this block: intervened at
        every position with intervene_on="all", untouched otherwise."""
        if self.intervene_on != "all":
            yield
            return
        self.detach()
        self.active.generating = True
        self.handles = [target.register_forward_hook(hook) for target, hook in self.hooks]
        try:
            yield
        finally:
            self.active.generating = False
            self.detach()

    @contextlib.contextmanager
    def intervene(self, attention_mask: torch.Tensor, prompt_lengths: list[int], first_forward_only: bool,
                  offsets: list[int] | None = None):
        """Intervene at the configured prompt positions of each (left-padded) row during the block; `offsets`: the
        prompt position of each row's first real input token, when the input is a later part of the prompt (the
        rest of it in a cache)."""
        self.active.positions = self.locations(attention_mask, prompt_lengths, offsets)
        self.active.first_forward_only = first_forward_only
        self.active.generating = False
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
            self.active.generating = False
            self.detach()

    def locations(self, attention_mask: torch.Tensor, prompt_lengths: list[int], offsets: list[int] | None = None
                  ) -> _Locations:
        """Where to intervene in this input: each row's prompt positions (counted on its whole prompt) that fall in
        the input, as (row, column) pairs per position group. Without `offsets`, the input starts at the prompt's
        first token; with them, row b's input holds prompt positions offsets[b] onwards, as many as it has real
        tokens. With intervene_on="all", the row's tokens after its prompt (a continuation) join the generation
        group."""
        pads = attention_mask.argmax(1).tolist()  # left padding per row: the first real token (argmax: the first 1)
        width = attention_mask.shape[1]
        starts = offsets or [0] * len(prompt_lengths)
        stops = [s + int(n) for s, n in zip(starts, attention_mask.sum(1).tolist())]

        def flat(b: int, positions: list[int]) -> list[int]:  # row b's positions as indices into (batch x width)
            return [b * width + pads[b] + p - starts[b] for p in positions if starts[b] <= p < stops[b]]

        per_row = [position_groups(self.groups, n) for n in prompt_lengths]
        if self.intervene_on == "all":
            for b, n in enumerate(prompt_lengths):
                per_row[b][-1] = per_row[b][-1] + list(range(n, stops[b]))
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


def load_reft(model: torch.nn.Module, folder: Path, positions: str | None = None,
              share_weights: bool | None = None, scale: float | None = None) -> ReftAdapter:
    """Rebuild a saved pyreft intervention set, check it against the model, and hook it in; `scale` multiplies
    steering vectors' strength (see `steering.py`)."""
    found = check_reft(model, folder, positions, share_weights)
    device = next(model.parameters()).device
    modules = [m.to(device) for m in found.modules]
    if scale is not None:
        for module in modules:
            if isinstance(module, SteeringIntervention):
                module.scale = float(scale)
    return ReftAdapter(model, found.specs, modules, found.positions, found.share_weights,
                       intervene_on=found.intervene_on).attach()


