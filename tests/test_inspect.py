"""`vlm-peft-bench inspect`: each zoo adapter described as its card says, unusable folders refused cleanly."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlm_peft_bench.cli import main
from vlm_peft_bench.methods.inspect import module_names, name_layout
from vlm_peft_bench.methods.recipe import load_recipe
from vlm_peft_bench.methods.table import method_table

from .conftest import REPO

ZOO = REPO / "adapters_zoo"
CARDS = sorted(ZOO.glob("*.yaml"))


def inspect_json(capsys, *args):
    with pytest.raises(SystemExit) as done:
        main(["inspect", *args, "--json"])
    captured = capsys.readouterr()
    assert done.value.code == 0, captured.err[-2000:]
    return json.loads(captured.out)


def check_derived_settings(derivation: dict, settings: dict) -> None:
    if derivation["file"] == "combination.json":  # peft's "cat": the parents' ranks side by side, scaling 1
        parents = [yaml.safe_load((REPO / "adapters_zoo" / f"{Path(p['path']).name}.yaml").read_text())
                   for p in derivation["parents"]]
        ranks = [load_recipe(p["recipe"]).section("lora").r for p in parents]
        assert settings["peft_type"] == "LORA" and settings["r"] == sum(ranks) == settings["lora_alpha"]
        assert [p["method"] for p in derivation["parents"]] == ["lora"] * len(ranks)
    else:  # a steering vector: what steering.json records, as the card copied it
        assert derivation["file"] == "steering.json"
        for key in ("strength", "layers", "data", "seed", "component"):
            assert settings[key] == derivation[key], key
        assert settings["vectors"] == len(derivation["layers"])
        assert settings.get("k") == derivation.get("k") and settings.get("parents") == derivation.get("parents")


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem.split("__")[0])
def test_zoo_adapter_matches_its_card(card_path, capsys):
    card = yaml.safe_load(card_path.read_text())
    report = inspect_json(capsys, str(REPO / card["weights"]), "--base", card["base"]["name"])
    assert report["format"] == method_table()[card["method"]].format and report["method"] == card["method"]
    assert report["sha256"] == card["adapter_hash"]
    tiny, = [b for b in report["bases"] if b["base"] == card["base"]["name"]]
    assert tiny["loads"] and tiny["problem"] is None
    assert (tiny["trainable"], tiny["total"]) == (card["params"]["trainable"], card["params"]["total"])
    assert tiny["fraction"] == pytest.approx(card["params"]["fraction"])
    big, = [b for b in report["bases"] if b["base"] == "nanollava"]  # the published size: hidden 1024, 24 layers
    assert not big["loads"] and "another base model" in big["problem"]
    assert report["layout"] == ("any" if card["method"] == "prefix" else "transformers-4.45")
    settings = report["settings"]
    if "recipe" not in card:  # made by adapters_zoo/build_derived.sh: its settings are its derivation record's
        check_derived_settings(card["derivation"], settings)
        return
    recipe = load_recipe(card["recipe"])
    if card["method"] == "reft":
        reft = recipe.section("reft")
        assert settings["rank"] == [reft.rank] and settings["positions"] == reft.positions
        assert settings["intervention_types"] == ["LoreftIntervention"] and settings["layers"] == [0, 1, 2, 3]
    if card["method"] in ("lora", "dora", "pt-lora"):
        lora = settings["lora"] if card["method"] == "pt-lora" else settings
        assert lora["peft_type"] == "LORA" and lora["r"] == recipe.section("lora").r
        assert lora["lora_alpha"] == recipe.section("lora").alpha
        assert lora["target_modules"] == sorted(recipe.section("lora").target_modules)
    if card["method"] in ("prefix", "pt-lora"):
        prefix = settings["prefix"] if card["method"] == "pt-lora" else settings
        assert prefix["num_virtual_tokens"] == recipe.section("prefix").num_virtual_tokens


def test_human_report(capsys):
    with pytest.raises(SystemExit) as done:
        main(["inspect", str(ZOO / "weights" / "lora-r8__nanollava-tiny__cvbench_mini")])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "format" in out and "LORA" in out and "vlreft will NOT load it" in out  # only nanollava: too big


def test_unknown_folder_exits_2_without_traceback(tmp_path):
    (tmp_path / "notes.txt").write_text("not an adapter")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                         os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "vlm_peft_bench.cli", "inspect", str(tmp_path), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "not a recognised adapter folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "bad-config"])
def test_corrupt_adapter_exits_2(damage, tmp_path, capsys):
    folder = tmp_path / "lora"
    shutil.copytree(ZOO / "weights" / "lora-r8__nanollava-tiny__cvbench_mini", folder)
    weights = folder / "adapter_model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    else:
        (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(SystemExit) as done:
        main(["inspect", str(folder), "--json"])
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("vlm-peft-bench inspect: ") and str(folder) in captured.err


def test_offline_uncached_hub_id_fails_fast(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["inspect", "someone/no-such-adapter"])
    assert done.value.code == 2
    assert "not reachable and it is not in the local cache" in capsys.readouterr().err


def test_module_names_of_zoo_adapters():
    names = module_names(ZOO / "weights" / "lora-r8__nanollava-tiny__cvbench_mini")
    assert "language_model.model.layers.0.self_attn.q_proj" in names and "q_proj" in names
    assert not any(".lora_" in n or n.endswith(".weight") for n in names)
    reft = module_names(ZOO / "weights" / "reft-r4-all__nanollava-tiny__cvbench_mini")
    assert reft == [f"language_model.model.layers[{i}].output" for i in range(4)]


@pytest.mark.parametrize("names, layout", [
    (["language_model.model.layers.0.self_attn.q_proj", "multi_modal_projector.linear_1"], "transformers-4.45"),
    (["vision_tower.vision_model.encoder.layers.0.mlp.fc1"], "transformers-4.45"),
    (["model.language_model.layers.0.self_attn.q_proj", "model.vision_tower.vision_model.encoder.layers.0"],
     "transformers-4.52"),
    (["model.language_model.layers.0.mlp.up_proj", "model.vision_tower.encoder.layers.0.mlp.fc1"], "transformers-5"),
    (["model.vision_tower.embeddings.patch_embedding"], "transformers-5"),
    (["model.language_model.layers.0.mlp.up_proj"], "transformers-4.52+"),
    (["model.layers.0.self_attn.q_proj", "model.mm_projector.0"], "remote-code"),
    (["model.vision_tower.vision_tower.vision_model.encoder.layers.0"], "remote-code"),
    (["q_proj", "v_proj"], "any"),
    ([], "any"),
    (["transformer.h.0.attn"], "unknown"),
    (["language_model.model.layers.0.mlp", "model.layers.0.mlp"], "unknown"),  # two layouts at once
])
def test_name_layout(names, layout):
    assert name_layout(names) == layout
