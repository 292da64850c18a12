"""What the steering-vector methods share (shift vectors, contrastive vectors, in-context vectors): their folder is
pyvene's saved-intervention layout (config.json + one `intkey_<key>.bin` per vector, read and checked by
`adapters/reft_folder.py` and applied by the ReFT hooks) plus our settings (`vlm_peft_bench.json`: positions,
intervene_on) and `steering.json`, the derivation's record (kind, strength, layers, parents, data, K, seed).
Nothing in them is trained: they count 0 trained parameters and their vectors' entries as derived parameters.
Not a family itself (no INFO)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.detect import AdapterError, read_json_object
from vlm_peft_bench.adapters.reft import load_reft
from vlm_peft_bench.adapters.reft_folder import check_reft, load_intervention_state, read_meta, read_reft_config
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, untrained

STEERING_FILE = "steering.json"
KINDS = {"shift": "alpha", "contrast": "alpha", "icv": "lambda"}  # kind -> the name of its strength
RECORD_FIELDS = ("kind", "strength", "layers", "component")  # what every steering.json must hold


def read_steering(folder: Path) -> dict:
    """The derivation record, checked: a known kind, a finite non-zero strength, the layers."""
    path = Path(folder) / STEERING_FILE
    record = read_json_object(path)
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise AdapterError(f"{path}: missing {', '.join(missing)}")
    if record["kind"] not in KINDS:
        raise AdapterError(f"{path}: kind={record['kind']!r}: use one of {', '.join(KINDS)}")
    strength = record["strength"]
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength != strength or strength == 0:
        raise AdapterError(f"{path}: strength={strength!r}: a non-zero number was expected")
    return record


def scale_for(record: dict, strength: float | None) -> float:
    """The factor the vectors' modules apply. Additive vectors are stored already multiplied by their saved
    strength (so that pyvene adds what we add): a new strength rescales them. An ICV stores the direction: its
    factor is lambda itself."""
    saved = float(record["strength"])
    wanted = saved if strength is None else float(strength)
    return wanted if record["kind"] == "icv" else wanted / saved


class SteerFamily(MethodFamily):
    """Loaded through the ReFT hooks; `LoadOptions.strength` overrides the saved alpha or lambda."""

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        record = read_steering(folder)
        scale = scale_for(record, options.strength)
        return Attached(model, reft=load_reft(model, folder, positions=options.positions, scale=scale))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        read_steering(folder)
        check_reft(model, folder)

    def describe(self, folder: Path) -> tuple[str, dict]:
        record = read_steering(folder)
        specs = read_reft_config(folder)
        meta = read_meta(folder)
        settings = {**{k: v for k, v in record.items() if k != "kind"},
                    "strength_name": KINDS[record["kind"]], "vectors": len(specs),
                    "intervention_types": sorted({s.intervention_type for s in specs}),
                    "hidden_size": sorted({s.embed_dim for s in specs}), "positions": meta.get("positions"),
                    "intervene_on": meta.get("intervene_on", "prompt")}
        return f"{self.info.label} ({len(specs)} vectors)", settings

    def module_names(self, folder: Path) -> list[str]:
        read_reft_config(folder)
        return sorted({rep[1] for rep in json.loads((folder / "config.json").read_text())["representations"]})

    def named_base(self, folder: Path) -> str | None:
        base = read_steering(folder).get("base")
        return base if isinstance(base, str) else None

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        return 0, untrained()  # derived, not trained: see count_derived

    def count_derived(self, folder: Path) -> int:
        """The vectors' entries: computed from the model's states, not trained."""
        return sum(load_intervention_state(folder / f"intkey_{s.key}.bin")["source_representation"].numel()
                   for s in read_reft_config(folder))
