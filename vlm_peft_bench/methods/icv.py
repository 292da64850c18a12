"""In-context vectors (Liu et al. 2023): from K demonstrations, the leading principal direction of the differences
between each demonstration's states with and without its answer, applied at every layer's MLP output and every
position with strength lambda (`vlm-peft-bench steer icv`; the recipe and its source in `steering/icv.py`)."""

from __future__ import annotations

from vlm_peft_bench.methods._steer import SteerFamily

INFO = {
    "name": "icv", "label": "in-context vector", "colour": "#7f7f7f", "format": "pyvene",
    "recognise": {"files": ["config.json"], "any_glob": ["intkey_*"], "json": {"steering.json": {"kind": "icv"}}},
}


class IcvFamily(SteerFamily):
    module = "icv"


FAMILY = IcvFamily()
