"""Every adapter card in adapters_zoo matches its files and reproduces its score through `lmms_eval`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlm_peft_bench.adapters.accounting import account
from vlm_peft_bench.provenance import file_sha256

from .conftest import REPO

CARDS = sorted((REPO / "adapters_zoo").glob("*.yaml"))


def test_zoo_has_a_card_per_reference_recipe():
    recipes = {yaml.safe_load(c.read_text())["recipe"] for c in CARDS}
    assert {"reft-r4-all", "lora-r8", "full-ft", "prefix-16", "pt-lora"} <= recipes


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem.split("__")[0] for c in CARDS])
def test_card_matches_files_params_and_lmms_eval(card_path, tmp_path):
    card = yaml.safe_load(card_path.read_text())
    weights = REPO / card["weights"]
    for name, digest in card["files_sha256"].items():
        assert file_sha256(weights / name) == digest, f"{name} changed since the card was written"
    counted = account(card["base"]["name"], adapter=str(weights))
    assert counted["trainable"] == card["params"]["trainable"]
    beats = card["test"]["value"] > card["base_test"]["ci95"][1]
    assert card["beats_untrained_base_beyond_ci95"] is beats
    cmd = [str(Path(sys.executable).parent / "lmms_eval"), "--model", "vlreft", "--model_args",
           f"pretrained={card['base']['name']},adapter={card['weights']}", "--tasks", card["task"]["name"],
           "--batch_size", "8", "--output_path", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [results] = list(tmp_path.rglob("*_results.json"))
    data = json.loads(results.read_text())
    value = data["results"][card["task"]["name"]][f"{card['test']['metric']},none"]
    assert data["vlm_peft_bench"]["adapter"]["sha256"] == card["adapter_hash"]
    assert value == pytest.approx(card["test"]["value"], abs=1e-4)
