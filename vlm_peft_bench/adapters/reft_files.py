"""pyreft's saved folder, written without pyreft: what `ReftModel.save` (pyvene's `IntervenableModel.save`) writes.

* `config.json`: pyvene's `IntervenableConfig.save_pretrained` (transformers' `to_json_string`: keys sorted,
  indent 2, only the fields that differ from the defaults, plus `transformers_version`): the representations as
  14-field lists (layer, component, unit, max_number_of_units, low_rank_dimension, then nine nulls), the
  intervention types as `str(type(module))` of pyreft's classes, their dimensions and constant-source flags,
  `mode` and `sorted_keys`;
* one `intkey_<key>.bin` per intervention: `torch.save` of its `state_dict()`, with pyvene's key
  `comp_<component, dots as underscores>_unit_<unit>_nunit_<n>#<k>` (`k` counts repeats of the same location);
* our `vlm_peft_bench.json` beside them: the positions and weight sharing, which pyreft does not record.

Components are always written with transformers 4.45's Llava names (`language_model.model.layers[N].output`), the
only transformers pyreft 0.1.0 runs on, whatever transformers trains them: a folder then loads in pyreft as it is,
and the same training gives the same bytes on every stack (our loader reads every layout, see nanollava/layouts.py).

pyreft itself is optional (only tests comparing with it import it); where pyreft or pyvene is imported, do it
inside `vlm_peft_bench.quiet.stdout_to_stderr()`: pyvene prints a notice about nnsight on stdout at import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from vlm_peft_bench.adapters.interventions import type_string
from vlm_peft_bench.nanollava.layouts import TRANSFORMERS_4_45

CONFIG_FILE = "config.json"
META_FILE = "vlm_peft_bench.json"
N_REPRESENTATION_FIELDS = 14  # pyvene's RepresentationConfig namedtuple
HIDDEN_SOURCE_FIELD = 12  # its `hidden_source_representation`


@dataclass
class ReftEntry:
    """One intervention to save: where it acts (pyvene's layer and component) and the module."""

    layer: int
    component: str
    rank: int | None  # None for interventions without a rank (steering vectors), as pyvene writes it
    module: torch.nn.Module
    unit: str = "pos"
    max_number_of_units: int = 1


def representation_key(layer: int, component: str, unit: str = "pos", max_number_of_units: int = 1) -> str:
    """pyvene's key for a representation, without the `#<k>` collision count."""
    unit_ = unit.replace(".", "_")
    if "." in component:
        return f"comp_{component.replace('.', '_')}_unit_{unit_}_nunit_{max_number_of_units}"
    return f"layer_{layer}_comp_{component}_unit_{unit_}_nunit_{max_number_of_units}"


def intervention_keys(entries: list[ReftEntry]) -> list[str]:
    counts: dict[str, int] = {}
    keys = []
    for e in entries:
        proposal = representation_key(e.layer, e.component, e.unit, e.max_number_of_units)
        counts[proposal] = counts.get(proposal, -1) + 1
        keys.append(f"{proposal}#{counts[proposal]}")
    return keys


def reft_config(entries: list[ReftEntry]) -> dict:
    """config.json's content, as pyvene writes it for these interventions (a constant source, such as a steering
    vector's, is flagged `hidden_source_representation`: pyvene then reads it back from the intervention's file)."""
    reps = []
    for e in entries:
        rep = [e.layer, e.component, e.unit, e.max_number_of_units, e.rank] + [None] * (N_REPRESENTATION_FIELDS - 5)
        if getattr(e.module, "source_representation", None) is not None:
            rep[HIDDEN_SOURCE_FIELD] = True
        reps.append(rep)
    dims = []
    for e in entries:
        dim = getattr(e.module, "interchange_dim", None)
        dims.append(None if dim is None else dim.tolist())
    return {
        "intervention_constant_sources": [bool(e.module.is_source_constant) for e in entries],
        "intervention_dimensions": dims,
        "intervention_types": [type_string(type(e.module)) for e in entries],
        "mode": "parallel",
        "representations": reps,
        "sorted_keys": intervention_keys(entries),
        "transformers_version": transformers.__version__,
    }


def save_reft_folder(folder: Path, entries: list[ReftEntry], positions: str | None = None,
                     share_weights: bool | None = None, intervene_on: str = "prompt") -> Path:
    """Write `entries` in pyreft's format (plus our settings file when `positions` is given; `intervene_on` is
    written only when it is not pyreft's behaviour, "prompt")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = reft_config(entries)
    for key, e in zip(config["sorted_keys"], entries):
        torch.save(e.module.state_dict(), folder / f"intkey_{key}.bin")
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if positions is not None:
        meta = {"positions": positions, "share_weights": True if share_weights is None else bool(share_weights)}
        if intervene_on != "prompt":
            meta["intervene_on"] = intervene_on
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def layer_component(layer: int) -> str:
    """pyvene's component string for the output of decoder layer `layer`, under pyreft's (transformers 4.45) names."""
    return f"{TRANSFORMERS_4_45.text}.layers[{layer}].output"
