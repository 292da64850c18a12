"""Steering rows on the leaderboard: 0 trained parameters, their derived count in a column of its own, plotted
and compared on the Pareto frontier at (trainable + derived) / total."""

import json

from vlm_peft_bench.leaderboard.build import collect, render_outputs

from .test_leaderboard_factory import write_card, write_run

TOTAL = 1_926_912


def _steering_run(folder, stamp, accuracy, derived):
    path = write_run(folder, stamp, adapter="shift-lora", accuracy=accuracy, seed=5)
    data = json.loads(path.read_text())
    data["vlm_peft_bench"]["adapter"]["method"] = "shift"
    data["vlm_peft_bench"]["params"] = {"trainable": 0, "total": TOTAL, "fraction": 0.0, "derived": derived}
    path.write_text(json.dumps(data))
    return path


def test_a_steering_row_is_placed_by_its_derived_parameters(tmp_path):
    results, zoo = tmp_path / "results", tmp_path / "zoo"
    write_run(results / "base", "20260101_000000", accuracy=0.2, seed=1)
    _steering_run(results / "shift", "20260102_000000", accuracy=0.5, derived=512)
    write_card(zoo, "lora-small", "lora", trainable=256)  # fewer parameters than the vectors add, a higher score
    write_run(results / "lora", "20260103_000000", adapter="lora-small", accuracy=0.95, seed=2)
    doc = collect([results], zoo=zoo)
    rows = {r["method"]: r for r in doc["rows"]}
    shift = rows["shift"]["params"]
    assert shift["trainable"] == 0 and shift["derived"] == 512 and shift["fraction"] == 0
    assert abs(shift["plotted"] - 512 / TOTAL) < 1e-9
    assert rows["lora"]["params"]["plotted"] == rows["lora"]["params"]["fraction"] and rows["base"]["params"][
        "plotted"] == 0
    (group,) = doc["groups"]
    order = [r["method"] for r in doc["rows"]]
    assert order == ["base", "lora", "shift"]  # by plotted fraction
    scores = {r["method"]: r["cells"][group["id"]]["metrics"][group["headline"]]["value"] for r in doc["rows"]}
    assert scores["base"] < scores["shift"] < scores["lora"], scores
    on_front = {r["method"] for r in doc["rows"] if r["id"] in group["pareto"]}
    assert "shift" not in on_front and {"base", "lora"} <= on_front  # LoRA: fewer parameters, higher score
    outputs = render_outputs(doc)
    md = outputs["leaderboard.md"].decode()
    assert "| trainable | fraction | derived |" in md and "| 0 | 0 | 512 |" in md
    csv_header = outputs["leaderboard.csv"].decode().splitlines()[0]
    assert "derived_params,plotted_fraction" in csv_header
    assert "derived" in json.loads(outputs["leaderboard.json"])["definitions"]
