"""Parameter accounting reproduces the VL-ReFT paper's Table 4 for nanoLLaVA, and counts adapters from files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.params import account, adapter_file_params
from vlm_peft_bench.methods.recipe import load_recipe, select_layers

TABLE_4 = {"reft-r4-all": 0.019, "lora-r8": 0.17, "full-ft": 60.99}  # percent of nanoLLaVA's parameters


@pytest.mark.parametrize(("recipe", "percent"), TABLE_4.items())
def test_table_4_is_reproduced(recipe, percent):
    report = account("nanollava", recipe=load_recipe(recipe))
    assert report["total"] == 1_019_548_192
    assert abs(report["percent"] - percent) < 0.005
    components = report["components"]
    assert sum(c["trainable"] for c in components.values()) == report["trainable"]


def test_component_totals_add_up():
    report = account("nanollava")
    c = report["components"]
    assert c["vision_tower"]["total"] + c["projector"]["total"] + c["language_model"]["total"] == report["total"]
    assert c["projector"]["total"] == 1152 * 1024 + 1024 + 1024 * 1024 + 1024
    assert report["trainable"] == 0


@pytest.mark.slow
def test_cli_json():
    cmd = [str(Path(sys.executable).parent / "vlm-peft-bench"), "params", "--base", "nanollava", "--recipe",
           "reft-r4-all", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    report = json.loads(out[out.index("{"):])
    assert report["trainable"] == 24 * (1024 * 4 + 4 * 1024 + 4)


def test_lora_adapter_counted_from_its_files(tmp_path):
    from peft import LoraConfig, get_peft_model

    from vlm_peft_bench.nanollava.loading import load_nanollava

    base = load_nanollava("nanollava-tiny").model
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.save_pretrained(tmp_path / "lora")
    assert adapter_file_params(tmp_path / "lora") == ("peft", expected)
    report = account("nanollava-tiny", adapter=str(tmp_path / "lora"))
    assert report["trainable"] == expected and report["components"]["adapter"]["total"] == expected


def test_layer_selection():
    assert select_layers("all", 4) == [0, 1, 2, 3]
    assert select_layers("last:2", 24) == [22, 23]
    assert select_layers([0, 5], 24) == [0, 5]
    with pytest.raises(AdapterError, match="do not exist"):
        select_layers([30], 24)


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(AdapterError, match="known recipes: .*lora-r8"):
        load_recipe("lora-r99")


@pytest.mark.parametrize("intervention", ["LoreftIntervention", "NoreftIntervention", "ConsreftIntervention",
                                          "LobireftIntervention", "DireftIntervention", "NodireftIntervention"])
def test_reft_adapter_counted_from_its_files(tmp_path, intervention):
    """Trainable parameters only: the intkey files also hold pyvene's `embed_dim` buffers, and the unfrozen
    orthogonal parametrisation a `base` buffer; none of them is trained."""
    from .adapter_factory import reft_interventions, save_reft

    entries = reft_interventions(intervention, layers=(0, 2), rank=3)
    expected = sum(p.numel() for e in entries for p in e.module.parameters() if p.requires_grad)
    assert adapter_file_params(save_reft(entries, tmp_path / "reft")) == ("pyreft", expected)
