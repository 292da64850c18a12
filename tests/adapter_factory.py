"""Small adapters for tests, on the embedded tiny model: ReFT folders written by our own pyreft-format writer (no
pyreft needed), LoRA with peft. `needs_pyreft()` / `pyreft_model()` serve the tests that compare with pyreft itself."""

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from vlm_peft_bench.adapters.interventions import INTERVENTIONS
from vlm_peft_bench.adapters.positions import position_groups
from vlm_peft_bench.adapters.reft_files import ReftEntry, layer_component, save_reft_folder
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.quiet import stdout_to_stderr

HIDDEN = 128


def reft_interventions(intervention: str = "LoreftIntervention", layers=(0, 1, 2, 3), rank: int = 4,
                       seed: int = 0) -> list[ReftEntry]:
    """Interventions (our modules) on the tiny model's layers, with random (non-identity) weights."""
    torch.manual_seed(seed)
    entries = []
    for layer in layers:
        module = INTERVENTIONS[intervention](embed_dim=HIDDEN, low_rank_dimension=rank, dtype=torch.float32,
                                             add_bias=True)
        with torch.no_grad():
            for name, p in module.named_parameters():
                if "parametrizations" not in name:  # keep the rotation orthonormal, as pyreft builds it
                    p.normal_(0, 0.3)
        entries.append(ReftEntry(layer, layer_component(layer), rank, module))
    return entries


def save_reft(entries: list[ReftEntry], folder: Path, positions: str = "f3+m3+l3", share_weights: bool = True) -> Path:
    return save_reft_folder(folder, entries, positions, share_weights)


def needs_pyreft():
    """pyreft, or skip the test (with the reason printed): only comparisons with pyreft itself need it."""
    with stdout_to_stderr():
        return pytest.importorskip("pyreft", reason="pyreft is not installed: this test compares with pyreft itself")


def pyreft_model(folder: Path, model=None):
    """A pyreft ReftModel holding a saved folder's interventions, read by pyvene and pyreft themselves:
    pyvene's `IntervenableConfig.from_pretrained` reads config.json, pyvene's `get_type_from_string` resolves the
    types to pyreft's classes, pyvene's keys name the `intkey_*.bin` files, pyreft's `load_state_dict` loads them.
    (`ReftModel.load` itself cannot rebuild interventions on Llava: pyvene does not know its hidden size; and it
    would rebuild them in bfloat16.)"""
    pyreft = needs_pyreft()
    import pyvene
    from pyvene.models.basic_utils import get_type_from_string

    model = model if model is not None else load_nanollava("nanollava-tiny").model
    config = pyvene.IntervenableConfig.from_pretrained(str(folder))
    reps = []
    for rep, type_str, dim in zip(config.representations, config.intervention_types, config.intervention_dimensions):
        layer, component, unit, n_units, rank = rep[:5]
        module = get_type_from_string(type_str)(embed_dim=dim, low_rank_dimension=rank, dtype=torch.float32,
                                                add_bias=True)
        reps.append({"layer": layer, "component": component, "unit": unit, "max_number_of_units": n_units,
                     "low_rank_dimension": rank, "intervention": module})
    rm = pyreft.get_reft_model(model, pyreft.ReftConfig(representations=reps))
    assert list(rm.interventions) == config.sorted_keys
    for key, module in rm.interventions.items():
        module.load_state_dict(torch.load(Path(folder) / f"intkey_{key}.bin", map_location="cpu", weights_only=True))
    return rm


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
