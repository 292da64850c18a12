"""Small adapters for tests, made with pyreft's and peft's own APIs on the embedded tiny model."""

import json
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from vlm_peft_bench.adapters.positions import position_groups
from vlm_peft_bench.nanollava.loading import load_nanollava

HIDDEN = 128


def reft_model(intervention: str = "LoreftIntervention", layers=(0, 1, 2, 3), rank: int = 4, seed: int = 0):
    """A pyreft ReftModel on a fresh tiny model, with random (non-identity) intervention weights."""
    import pyreft  # only here: the peft helpers below work without pyreft

    torch.manual_seed(seed)
    model = load_nanollava("nanollava-tiny").model
    cls = getattr(pyreft, intervention)
    reps = [{"layer": layer, "component": f"language_model.model.layers[{layer}].output", "low_rank_dimension": rank,
             "intervention": cls(embed_dim=HIDDEN, low_rank_dimension=rank, dtype=torch.float32, add_bias=True)}
            for layer in layers]
    rm = pyreft.get_reft_model(model, pyreft.ReftConfig(representations=reps))
    with torch.no_grad():
        for module in rm.interventions.values():
            for name, p in module.named_parameters():
                if "parametrizations" not in name:  # keep LoReFT's rotation orthonormal, as pyreft builds it
                    p.normal_(0, 0.3)
    return rm


def save_reft(rm, folder: Path, positions: str = "f3+m3+l3", share_weights: bool = True) -> Path:
    rm.save(str(folder))
    (folder / "vlm_peft_bench.json").write_text(json.dumps({"positions": positions, "share_weights": share_weights}))
    return folder


def reference_locations(positions: str, prompt_lengths, width: int):
    """Absolute positions per row, written out independently of the code under test."""
    rows = []
    for n in prompt_lengths:
        pad = width - n
        rows.append([pad + p for group in position_groups(positions, n) for p in group])
    return rows


def lora_model(seed: int = 0, targets=("q_proj", "v_proj")):
    torch.manual_seed(seed)
    model = load_nanollava("nanollava-tiny").model
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    return get_peft_model(model, config)
