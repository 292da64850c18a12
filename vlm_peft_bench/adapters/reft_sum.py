"""A sum of ReFT edits: several saved intervention sets applied together, each at its own positions, as
h + sum_i w_i (f_i(h) - h), every f_i reading the same unedited states h. Summing the parents' parameters instead
would break LoReFT's orthonormal rotation; applying them one after another would feed one parent's output to the
next. Each parent is a `ReftAdapter` in "sum" mode: a hook installed before theirs keeps each hooked module's
unedited output, which their hooks read, and each adds its weighted edit.

The folder (`combine` writes it, `methods/reft_sum.py` loads it): `composition.json` (weights, the parents' paths
and hashes) and `parents/<i>/`, a copy of each parent's folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlm_peft_bench.adapters.detect import AdapterError, read_json_object
from vlm_peft_bench.adapters.reft import ReftAdapter, load_reft
from vlm_peft_bench.adapters.reft_folder import check_reft

COMPOSITION_FILE = "composition.json"
PARENTS = "parents"


def read_composition(folder: Path) -> tuple[list[Path], list[float]]:
    """(the parents' folders inside `folder`, their weights), checked."""
    path = Path(folder) / COMPOSITION_FILE
    record = read_json_object(path)
    weights = record.get("weights")
    if not isinstance(weights, list) or len(weights) < 2 or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise AdapterError(f"{path}: 'weights' must list a number per parent (at least two)")
    parents = [Path(folder) / PARENTS / str(i) for i in range(len(weights))]
    missing = [str(p) for p in parents if not p.is_dir()]
    if missing:
        raise AdapterError(f"{path}: parent folder(s) missing: {', '.join(missing)}")
    return parents, [float(w) for w in weights]


def check_reft_sum(model: torch.nn.Module, folder: Path) -> None:
    parents, _ = read_composition(folder)
    for parent in parents:
        check_reft(model, parent)


@dataclass
class ReftSum:
    """Quacks like a `ReftAdapter` for the runner: `intervene`, `generating`, `positions_before`."""

    parents: list[ReftAdapter]
    originals: dict = field(default_factory=dict)
    handles: list = field(default_factory=list)

    @property
    def intervene_on(self) -> str:
        return "all" if any(p.intervene_on == "all" for p in self.parents) else "prompt"

    def _keep_originals(self):
        targets = {id(t): t for p in self.parents for t, _ in p.hooks}

        def keep(module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            self.originals[module] = hidden.detach().reshape(-1, hidden.shape[-1]).clone()

        self.handles = [t.register_forward_hook(keep, prepend=True) for t in targets.values()]

    @contextlib.contextmanager
    def _around(self, contexts):
        self._keep_originals()
        try:
            with contextlib.ExitStack() as stack:
                for context in contexts:
                    stack.enter_context(context)
                yield
        finally:
            for h in self.handles:
                h.remove()
            self.handles.clear()
            self.originals.clear()

    def intervene(self, attention_mask, prompt_lengths, first_forward_only, offsets=None):
        return self._around([p.intervene(attention_mask, prompt_lengths, first_forward_only, offsets)
                             for p in self.parents])

    def generating(self):
        return self._around([p.generating() for p in self.parents])

    def positions_before(self, prompt_length: int, end: int) -> tuple:
        return tuple(p.positions_before(prompt_length, end) for p in self.parents)


def load_reft_sum(model: torch.nn.Module, folder: Path) -> ReftSum:
    parents, weights = read_composition(folder)
    adapters = [load_reft(model, parent) for parent in parents]
    composed = ReftSum(adapters)
    for adapter, weight in zip(adapters, weights):
        adapter.weight, adapter.originals = weight, composed.originals
    return composed
