"""Shift vectors: the mean difference between an adapted model's and its base's hidden states, per layer, at chosen
prompt positions, over a task's training items (`vlm-peft-bench steer shift`), added back to the base with a
strength alpha: the fine-tuning's representation shift, without the fine-tuned weights."""

from __future__ import annotations

from vlm_peft_bench.methods._steer import SteerFamily

INFO = {
    "name": "shift", "label": "shift vector", "colour": "#e377c2", "format": "pyvene",
    "recognise": {"files": ["config.json"], "any_glob": ["intkey_*"], "json": {"steering.json": {"kind": "shift"}}},
}


class ShiftFamily(SteerFamily):
    module = "shift"


FAMILY = ShiftFamily()
