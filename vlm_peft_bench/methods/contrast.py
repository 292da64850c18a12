"""Contrastive steering vectors: the mean difference between the base's hidden states on two sets of prompts (with
images or not), per layer, at chosen prompt positions (`vlm-peft-bench steer contrast`), added with a strength
alpha."""

from __future__ import annotations

from vlm_peft_bench.methods._steer import SteerFamily

INFO = {
    "name": "contrast", "label": "contrastive vector", "colour": "#bcbd22", "format": "pyvene",
    "recognise": {"files": ["config.json"], "any_glob": ["intkey_*"],
                  "json": {"steering.json": {"kind": "contrast"}}},
}


class ContrastFamily(SteerFamily):
    module = "contrast"


FAMILY = ContrastFamily()
