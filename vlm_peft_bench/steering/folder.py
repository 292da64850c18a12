"""Write steering vectors as a folder the `shift`, `contrast` and `icv` families load (`methods/_steer.py`):
pyvene's saved-intervention files (config.json, one `intkey_<key>.bin` per vector, via `adapters/reft_files.py`),
our settings (`vlm_peft_bench.json`) and `steering.json`, the record of how they were derived. The folder is
written under a temporary name and renamed into place: a killed run never leaves half a folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers

from vlm_peft_bench import __version__
from vlm_peft_bench.adapters.reft_files import ReftEntry, layer_component, save_reft_folder
from vlm_peft_bench.adapters.steering import AdditionIntervention, IcvIntervention
from vlm_peft_bench.methods._steer import KINDS, STEERING_FILE

COMPONENTS = {"block_output": "", "mlp_output": ".mlp"}  # where in each layer the vector acts


def component_path(layer: int, component: str) -> str:
    """pyvene's component string: the layer's output, or its MLP's, under pyreft's (transformers 4.45) names."""
    return layer_component(layer).removesuffix(".output") + COMPONENTS[component] + ".output"


def save_steering(folder: Path | str, vectors: dict[int, torch.Tensor], record: dict, positions: str,
                  intervene_on: str = "prompt", component: str = "block_output") -> Path:
    """Save one vector per layer. `record` holds at least `kind` and `strength` (alpha, or an ICV's lambda); the
    additive kinds store vector x alpha (what pyvene would add), an ICV its direction."""
    kind, strength = record["kind"], float(record["strength"])
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {', '.join(KINDS)}")
    if component not in COMPONENTS:
        raise ValueError(f"component={component!r}: use one of {', '.join(COMPONENTS)}")
    if strength == 0 or strength != strength:
        raise ValueError(f"{KINDS[kind]}={strength}: a non-zero number is needed")
    entries = []
    for layer, vector in sorted(vectors.items()):
        vector = vector.detach().float().cpu()
        module = (IcvIntervention(vector.numel(), vector) if kind == "icv"
                  else AdditionIntervention(vector.numel(), vector * strength))
        entries.append(ReftEntry(int(layer), component_path(int(layer), component), None, module))
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not (folder / STEERING_FILE).is_file():
        raise FileExistsError(f"{folder} exists and is not a steering-vector folder: choose another --out")
    temp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    save_reft_folder(temp, entries, positions, True, intervene_on)
    full_record = {**record, "strength": strength, "layers": sorted(int(k) for k in vectors),
                   "component": component,
                   "versions": {"vlm-peft-bench": __version__, "torch": torch.__version__,
                                "transformers": transformers.__version__}}
    (temp / STEERING_FILE).write_text(json.dumps(full_record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    temp.rename(folder)
    return folder
