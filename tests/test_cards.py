"""`vlm-peft-bench card`: the zoo card of an adapter `train` did not make (here a steering vector), with its
derivation record, parameters counted from its files, and the answers file the zoo tests re-derive claims from.
lmms-eval's scoring is replaced by a stand-in (the zoo test runs the real one for every committed card)."""

import json

import pytest
import torch
import yaml

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.cli import main
from vlm_peft_bench.leaderboard.cards import read_card
from vlm_peft_bench.methods.attach import adapter_hash
from vlm_peft_bench.steering.folder import save_steering
from vlm_peft_bench.train.cards import derived_card
from vlm_peft_bench.train.evaluation import Evaluation

HIDDEN = 128  # the tiny base's hidden size


@pytest.fixture
def steering(tmp_path):
    record = {"kind": "shift", "strength": 0.5, "parents": [{"path": "p", "sha256": "0" * 64, "method": "lora"}],
              "data": {"task": "cvbench_mini", "items": 3}}
    return save_steering(tmp_path / "shift-x", {k: torch.ones(HIDDEN) * k for k in (1, 2)}, record, "all")


def fake_evaluation(task_name, base, adapter, seed):
    value = 0.40 if adapter is None else 0.47
    summary = {"metric": "cvbench_combined", "value": value, "ci95": [value - 0.03, value + 0.03], "n": 3,
               "scores": {"cvbench_combined": value}, "answers_given": {"A": 3},
               "command": f"lmms_eval --model vlreft --model_args pretrained={base} --tasks {task_name}"}
    return Evaluation(summary, ["A", "B", "A" if adapter else "C"], {"transformers": "x", "peft": "y", "torch": "z"})


def test_derived_card_records_method_parameters_and_derivation(steering):
    card = derived_card(steering, "cvbench_mini", "nanollava-tiny", seed=3)
    assert card["id"] == "shift-x" and card["method"] == "shift" and card["seed"] == 3
    assert card["params"]["trainable"] == 0 and card["params"]["derived"] == 2 * HIDDEN
    assert card["params"]["fraction"] == 0 and card["params"]["derived_fraction"] > 0
    assert card["derivation"]["file"] == "steering.json" and card["derivation"]["strength"] == 0.5
    assert card["derivation"]["parents"][0]["method"] == "lora"
    assert card["adapter_hash"] == adapter_hash(steering)
    assert set(card["files_sha256"]) >= {"config.json", "steering.json", "vlm_peft_bench.json"}
    with pytest.raises(AdapterError, match="a file name is needed"):
        derived_card(steering, "cvbench_mini", "nanollava-tiny", card_id="a/b")


def test_card_command_writes_a_card_the_leaderboard_reads_and_the_answers(steering, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("vlm_peft_bench.train.cards.evaluate_with_lmms", fake_evaluation)
    zoo = tmp_path / "zoo"
    with pytest.raises(SystemExit) as done:
        main(["card", str(steering), "--task", "cvbench_mini", "--id", "shift-x__nanollava-tiny__cvbench_mini",
              "--zoo", str(zoo)])
    assert done.value.code == 0
    assert "shift, test cvbench_combined 0.47" in capsys.readouterr().out
    card = read_card(zoo / "shift-x__nanollava-tiny__cvbench_mini.yaml")  # the leaderboard's own check
    assert card["test"]["value"] == 0.47 and card["base_test"]["value"] == 0.40
    assert card["beats_untrained_base_beyond_ci95"] is True  # 0.47 > 0.43
    mine = json.loads((zoo / "answers" / "shift-x__nanollava-tiny__cvbench_mini.json").read_text())
    base = json.loads((zoo / "answers" / "base__nanollava-tiny__cvbench_mini.json").read_text())
    assert mine["answers"] == ["A", "B", "A"] and base["answers"] == ["A", "B", "C"]
    assert mine["command"].endswith(" --log_samples") and mine["versions"]["torch"] == "z"
    assert yaml.safe_load((zoo / "shift-x__nanollava-tiny__cvbench_mini.yaml").read_text())["weights"] == str(steering)


def test_a_folder_no_method_recognises_is_refused(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hello")
    with pytest.raises(AdapterError):
        derived_card(tmp_path / "odd", "cvbench_mini", "nanollava-tiny")
