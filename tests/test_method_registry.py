"""The method registry: one table read by everything, typed recipes that refuse what they would not read,
recognition of saved folders, and DoRA, added as a method by its own module and recipe only."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.methods.params import account
from vlm_peft_bench.methods.recipe import load_recipe, parse_recipe, recipe_names
from vlm_peft_bench.methods.registry import family, family_for_folder
from vlm_peft_bench.methods.table import colours, formats, method_name, method_table, recognise
from vlm_peft_bench.nanollava.loading import load_nanollava

from .conftest import REPO

CARDS = sorted((REPO / "adapters_zoo").glob("*.yaml"))


def test_the_table_loads_without_torch_transformers_or_peft():
    code = ("import sys; import vlm_peft_bench.methods.table as t, vlm_peft_bench.leaderboard.plots, "
            "vlm_peft_bench.leaderboard.page; t.method_table(); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_family_serves_its_own_row():
    table = method_table()
    assert {"reft", "lora", "dora", "prefix", "pt-lora", "full"} <= set(table)
    for name, info in table.items():
        assert family(name).info == info and family(name).name == name
        assert info.format in formats()
        assert info.colour.startswith("#") and len(info.colour) == 7
    assert len(set(colours().values())) == len(colours()), "two methods share a colour on the leaderboard"


def test_every_recipe_parses_and_names_a_method_with_a_recipe():
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.name == name
        assert method_table()[recipe.method].sections == tuple(recipe.sections)


@pytest.mark.parametrize(("change", "message"), [
    ({"reft": {"component": "mlp_output"}}, "only block_output"),
    ({"reft": {"rnak": 4}}, "reft: unknown key.s. rnak"),
    ({"train": {"learning_rate": 1}}, "train: unknown key.s. learning_rate"),
    ({"lora": {"r": 8}}, "unknown key.s. lora for method reft"),
    ({"method": "qlora"}, "`method` must be one of dora, full, lora, prefix, pt-lora, reft"),
])
def test_recipes_refuse_what_they_would_not_read(change, message):
    data = yaml.safe_load((REPO / "adapters_zoo" / "recipes" / "reft-r4-all.yaml").read_text())
    for key, value in change.items():
        data[key] = dict(data[key], **value) if isinstance(value, dict) and key in data else value
    with pytest.raises(AdapterError, match=message):
        parse_recipe(data, "my-recipe.yaml")


def test_a_section_missing_is_named():
    data = {"name": "x", "method": "pt-lora", "prefix": {"num_virtual_tokens": 4}}
    with pytest.raises(AdapterError, match="needs section.s. lora"):
        parse_recipe(data, "x.yaml")


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem.split("__")[0] for c in CARDS])
def test_zoo_folders_are_recognised_as_their_cards_method(card_path):
    card = yaml.safe_load(card_path.read_text())
    assert method_name(REPO / card["weights"]) == card["method"]


def test_other_peft_types_fall_back_to_peft_and_keep_their_name(tmp_path):
    model = get_peft_model(load_nanollava("nanollava-tiny").model,
                           IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"]))
    model.save_pretrained(tmp_path / "ia3")
    info = recognise(tmp_path / "ia3")
    assert info.fallback and info.format == "peft"
    assert method_name(tmp_path / "ia3") == "ia3"


def test_recognition_errors_say_what_is_missing(tmp_path):
    (tmp_path / "intkey_layer.0.comp.block_output.unit.pos.nunit.1#0.bin").write_bytes(b"")
    with pytest.raises(AdapterError, match="without config.json"):
        recognise(tmp_path)
    with pytest.raises(AdapterError, match="no such folder"):
        recognise(tmp_path / "absent")
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="adapter_config.json: not valid JSON"):
        recognise(tmp_path)


def test_adapter_type_must_agree_with_the_files():
    folder = REPO / "adapters_zoo" / "weights" / "lora-r8__nanollava-tiny__cvbench_mini"
    assert family_for_folder(folder, "peft")[0].name == "lora"
    with pytest.raises(AdapterError, match="holds a peft adapter"):
        family_for_folder(folder, "pyreft")
    with pytest.raises(AdapterError, match="use one of full, peft, pt-lora, pyreft"):
        family_for_folder(folder, "lora")


# -- DoRA, the method added through the registry alone

def _tiny_batch(loaded):
    return loaded.processor(["How many cyan squares are in the image?"], [Image.new("RGB", (64, 64), "cyan")])


def test_dora_trains_saves_and_loads_exactly_as_peft_does(tmp_path):
    recipe = load_recipe("dora-r8")
    dora = family(recipe.method)
    loaded = load_nanollava("nanollava-tiny")
    torch.manual_seed(0)
    [stage] = dora.prepare(recipe, loaded.model)
    trained = sum(p.numel() for group in stage.param_groups for p in group["params"])
    with torch.no_grad():  # a step's worth of change, so that the adapter is not the identity
        for group in stage.param_groups:
            for p in group["params"]:
                p.add_(0.05 * torch.randn_like(p))
    stage.save(tmp_path / "dora")
    config = json.loads((tmp_path / "dora" / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["peft_type"] == "LORA"
    assert recognise(tmp_path / "dora").name == "dora"
    # the count from the recipe, from the files and from the trained parameters agree
    assert account("nanollava-tiny", recipe=recipe)["trainable"] == trained
    assert account("nanollava-tiny", adapter=str(tmp_path / "dora"))["trainable"] == trained
    # a DoRA adds a magnitude vector per adapted module to LoRA's matrices
    lora_count = account("nanollava-tiny", recipe=load_recipe("lora-r8"))["trainable"]
    assert trained > lora_count

    batch = _tiny_batch(loaded)
    with torch.no_grad():
        ours = attach_adapter(load_nanollava("nanollava-tiny").model, str(tmp_path / "dora"))
        assert ours.method == "dora" and ours.kind == "peft"
        got = ours.model(**batch).logits
        reference = PeftModel.from_pretrained(load_nanollava("nanollava-tiny").model, str(tmp_path / "dora"))
        expected = reference(**batch).logits
        bare = load_nanollava("nanollava-tiny").model(**batch).logits
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, bare, atol=1e-3)


def test_lora_configs_are_built_in_one_place():
    lora, dora = family("lora"), family("dora")
    section = load_recipe("lora-r8").section("lora")
    assert isinstance(lora.lora_config(section), LoraConfig) and not lora.lora_config(section).use_dora
    assert dora.lora_config(section).use_dora
