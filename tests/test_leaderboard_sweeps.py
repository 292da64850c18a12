"""Sweeps (`vlm-peft-bench sweep`): the runner's file (points, resume, overrides per axis) and what the leaderboard
makes of sweep files among the results (document, plot, markdown table; bad files named, skippable)."""

import json
import re
from pathlib import Path

import pytest

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.leaderboard.build import build
from vlm_peft_bench.leaderboard.problems import BadInputs
from vlm_peft_bench.train import sweep as sweep_module
from vlm_peft_bench.train.evaluation import Evaluation
from vlm_peft_bench.train.sweep import parse_values, run_sweep, sweep_file

from .test_leaderboard_factory import standard_inputs

POINTS = {1: (0.52, 0.47, 0.44), 2: (0.55, 0.49, 0.47), 4: (0.58, 0.48, 0.46)}  # train, held-out, test


def write_sweep(folder: Path, axis: str = "rank", points: dict = POINTS, recipe: str = "reft-r4-all") -> Path:
    doc = {"kind": "vlm-peft-bench sweep", "recipe": recipe, "axis": axis,
           "axis_label": {"rank": "rank", "lowest_layer": "lowest intervened layer (layers L..last)"}[axis],
           "task": "cvbench_mini", "base": "nanollava-tiny", "seed": 0, "metric": "cvbench_combined",
           "layers_in_base": 4, "base_test": {"value": 0.42, "ci95": [0.39, 0.45], "n": 800, "scores": {}},
           "points": [{"value": v, "train": tr, "held_out": ho,
                       "test": {"value": te, "ci95": [te - 0.03, te + 0.03], "n": 800, "scores": {}},
                       "params": {"trainable": 1000 * v, "total": 10 ** 6, "fraction": v / 1000},
                       "adapter_hash": f"{v:064d}"} for v, (tr, ho, te) in points.items()],
           "command": "vlm-peft-bench sweep ...", "versions": {}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sweep__{recipe}__{axis}__nanollava-tiny__cvbench_mini.json"
    path.write_text(json.dumps(doc))
    return path


def test_leaderboard_reads_plots_and_tabulates_every_sweep(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_sweep(results / "sweeps", "rank")
    write_sweep(results / "sweeps", "lowest_layer", {0: (0.5, 0.46, 0.45), 3: (0.54, 0.5, 0.47)})
    out = tmp_path / "site"
    doc = build([results], out, zoo=zoo)
    assert [s["axis"] for s in doc["sweeps"]] == ["lowest_layer", "rank"]
    rank = doc["sweeps"][1]
    assert [(p["value"], p["train"], p["held_out"], p["test"]) for p in rank["points"]] == [
        (v, *scores) for v, scores in POINTS.items()]
    assert rank["base_test"] == {"value": 0.42, "ci95": [0.39, 0.45]}
    assert doc["inputs"]["sweeps"] == [s["file"] for s in doc["sweeps"]]
    for name in ("sweeps.png", "sweeps.svg"):
        assert (out / name).stat().st_size > 5000
    svg = (out / "sweeps.svg").read_text()
    assert "against rank" in svg.replace("\n", " ") or "rank" in svg  # titles are drawn as paths; the ids stay
    md = (out / "leaderboard.md").read_text()
    assert "## Sweep: reft-r4-all on cvbench_mini, cvbench_combined against rank" in md
    assert "| 4 | 4,000 | 0.4% | 0.580 | 0.480 | 0.460 (0.430-0.490) |" in md
    assert "lowest intervened layer (layers L..last)" in md
    again = tmp_path / "again"
    build([results], again, zoo=zoo)
    assert (again / "sweeps.png").read_bytes() == (out / "sweeps.png").read_bytes()


def test_without_sweeps_the_plot_says_so_and_the_document_has_none(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    doc = build([results], tmp_path / "site", zoo=zoo)
    assert doc["sweeps"] == [] and (tmp_path / "site" / "sweeps.png").is_file()
    assert "## Sweep" not in (tmp_path / "site" / "leaderboard.md").read_text()


@pytest.mark.parametrize("damage, says", [
    (lambda d: d.pop("points"), "no points"),
    (lambda d: d["points"][0]["test"].pop("ci95"), "points[0].test needs a number value and a two-number ci95"),
    (lambda d: d["points"][1].update(train="high"), "points[1].train is a string"),
    (lambda d: d.update(kind="something else"), "not a sweep file"),
])
def test_a_bad_sweep_file_is_named_and_can_be_skipped(tmp_path, damage, says):
    results, zoo = standard_inputs(tmp_path)
    path = write_sweep(results / "sweeps")
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(BadInputs, match=re.escape(says)) as err:
        build([results], tmp_path / "site", zoo=zoo)
    assert path.name in str(err.value) and not (tmp_path / "site").exists()
    kept = build([results], tmp_path / "site", zoo=zoo, skip_bad=True)
    assert kept["sweeps"] == [] and any(path.name in s["file"] for s in kept["inputs"]["skipped"])


def test_values_are_parsed_and_checked_against_the_base():
    assert parse_values("4,1,2", "rank", 4) == [1, 2, 4]
    assert parse_values("all", "lowest_layer", 4) == [0, 1, 2, 3]
    for text, axis, says in (("1,x", "rank", "whole numbers"), ("0", "rank", "out of range"),
                             ("4", "lowest_layer", r"in 0..3 \(the base has 4 layers\)"), ("2,2", "rank", "repeated")):
        with pytest.raises(AdapterError, match=says):
            parse_values(text, axis, 4)


@pytest.mark.slow
def test_run_sweep_trains_each_point_scores_it_and_resumes(tmp_path, monkeypatch):
    """Real training (40 items per point); lmms-eval's test-split scoring replaced by a stand-in that records
    which adapter it was given, so the test checks the runner's bookkeeping, not the scores."""
    scored = []

    def fake_evaluation(task_name, base, adapter, seed):
        scored.append(adapter)
        value = 0.40 if adapter is None else 0.45
        return Evaluation({"value": value, "ci95": [value - 0.03, value + 0.03], "n": 800, "scores": {}}, [], {})

    monkeypatch.setattr("vlm_peft_bench.train.evaluation.evaluate_with_lmms", fake_evaluation)
    path = run_sweep("reft-r4-all", "cvbench_mini", "lowest_layer", [2, 3], tmp_path, limit=40, log=lambda _: None)
    assert path == sweep_file(tmp_path, "reft-r4-all", "lowest_layer", "nanollava-tiny", "cvbench_mini")
    doc = json.loads(path.read_text())
    per_layer = 128 * 4 + 4 * 128 + 4  # LoReFT rank 4 on the tiny base's hidden size 128
    assert [(p["value"], p["overrides"]["layers"], p["params"]["trainable"]) for p in doc["points"]] == [
        (2, [2, 3], 2 * per_layer), (3, [3], per_layer)]
    assert all(0 <= p["train"] <= 1 and 0 <= p["held_out"] <= 1 for p in doc["points"])
    assert doc["base_test"]["value"] == 0.40 and [p["test"]["value"] for p in doc["points"]] == [0.45, 0.45]
    assert scored.count(None) == 1 and len(scored) == 3
    assert all((tmp_path / p["weights"]).is_dir() or Path(p["weights"]).is_dir() for p in doc["points"])

    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr("vlm_peft_bench.train.trainer.train", no_training)
    again = run_sweep("reft-r4-all", "cvbench_mini", "lowest_layer", [2, 3], tmp_path, limit=40, log=lambda _: None)
    assert json.loads(again.read_text())["points"] == doc["points"]
    assert sweep_module.KIND == doc["kind"]
