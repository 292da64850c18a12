"""The leaderboard: Pareto frontier, effective rank, grouping and refusal of incomparable results, reported rows,
schema, byte-identical rebuilds, and the committed leaderboard/ being exactly what the build makes."""

import json
import math

import numpy as np
import pytest

from vlm_peft_bench.cli import main
from vlm_peft_bench.leaderboard import SCHEMA_ID, SCHEMA_VERSION, LeaderboardError
from vlm_peft_bench.leaderboard.build import OUTPUTS, build, collect, render_outputs
from vlm_peft_bench.leaderboard.document import SCHEMA
from vlm_peft_bench.leaderboard.pareto import pareto_front
from vlm_peft_bench.leaderboard.tasks import spec_for
from vlm_peft_bench.scoring.spectrum import cumulative, effective_rank, effective_rank_ratio, singular_values

from .conftest import REPO
from .test_leaderboard_factory import ADAPTERS, TEMPLATE, standard_inputs, write_card, write_run

REPORTED = REPO / "leaderboard" / "reported.yaml"


def _rows(doc, kind="measured"):
    return {r["label"]: r for r in doc["rows"] if r["kind"] == kind}


# --- pure pieces ------------------------------------------------------------------------------------------------


def test_pareto_front_hand_made_points():
    points = [("base", 0.0, 0.40), ("reft", 0.002, 0.62), ("prefix", 0.008, 0.30), ("lora", 0.017, 0.60),
              ("full", 0.57, 0.66), ("big-worse", 0.9, 0.5)]
    assert pareto_front(points) == ["base", "reft", "full"]


def test_pareto_front_ties_missing_values_and_equal_fractions():
    points = [("a", 0.1, 0.5), ("b", 0.1, 0.5), ("c", 0.1, 0.4), ("d", None, 0.9), ("e", 0.2, float("nan")),
              ("f", 0.05, 0.5)]
    assert pareto_front(points) == ["f"]  # f dominates a and b (smaller fraction, same score)
    assert pareto_front([("a", 0.1, 0.5), ("b", 0.1, 0.5)]) == ["a", "b"]  # identical points both stay
    assert pareto_front([]) == []


def test_effective_rank_on_known_spectra():
    values = np.array([9.0, 1.0, 0.0, 0.0])
    assert effective_rank(values) == 1 and effective_rank_ratio(values) == 0.25
    assert effective_rank(np.array([5.0, 4.0, 1.0])) == 2  # 0.5, 0.9 -> reaches 0.9 at k = 2
    identity = singular_values(np.eye(10))
    assert effective_rank(identity) == 9 and math.isclose(cumulative(identity)[-1], 1.0)
    rank_one = singular_values(np.outer(np.arange(1, 7), np.ones(4)))  # 6 x 4 of rank 1
    assert len(rank_one) == 4 and effective_rank_ratio(rank_one) == 0.25
    padded = singular_values(np.ones((2, 5)))  # fewer items than dimensions: padded with zeros to d
    assert len(padded) == 5 and effective_rank(padded) == 1


def test_task_table_gives_each_task_its_headline():
    assert spec_for("cvbench_mini").headline == "cvbench_combined"
    assert spec_for("cvbench_mini").extra == ("cvbench_2d", "cvbench_3d")
    assert spec_for("cvbench_2d").headline == "cvbench_2d"
    assert spec_for("coco_captions_mini").headline == "CIDEr"
    assert set(spec_for("coco_captions_mini").extra) == {"Bleu_4", "METEOR", "ROUGE_L", "SPICE"}
    assert spec_for("vqa_v2_mini").headline == "vqa_accuracy"
    assert spec_for("mmmu") is None and spec_for("cvbenchx") is None


# --- the document -----------------------------------------------------------------------------------------------


def test_document_rows_params_intervals_pareto_and_schema(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    doc = collect([results], zoo=zoo, reported=REPORTED)
    assert doc["schema"] == SCHEMA_ID and doc["schema_version"] == SCHEMA_VERSION
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, SCHEMA)

    measured = _rows(doc)
    assert set(measured) == {"untrained base", *ADAPTERS}
    base = measured["untrained base"]
    assert base["method"] == "base" and base["params"] == {"trainable": 0, "total": 1_926_912, "fraction": 0.0,
                                                           "derived": 0, "plotted": 0.0, "source": "untrained base"}
    lora = measured["lora-r8"]
    assert lora["method"] == "lora" and lora["params"]["trainable"] == 32_768 and lora["params"]["source"] == "card"
    assert lora["card"].endswith("zoo/lora-r8.yaml") and lora["seeds"]["training"] == 0
    assert lora["versions"]["lmms-eval"] == "0.7.3" and lora["date"] == "2026-01-03 00:00:00"

    group = next(g for g in doc["groups"] if g["kind"] == "measured")
    assert group["task"] == "cvbench_mini" and group["headline"] == "cvbench_combined"
    cell = lora["cells"][group["id"]]
    combined = cell["metrics"]["cvbench_combined"]
    assert combined["ci95"][0] <= combined["value"] <= combined["ci95"][1]
    assert cell["metrics"]["cvbench_2d"]["ci95"] is not None and cell["n"] == 60
    assert cell["task_prompt"]["post_prompt"] == "\nAnswer with the option's letter from the given choices directly."
    assert cell["prompt_template"] == TEMPLATE and cell["task_hash"] == "7" * 64

    # the frontier, by hand: fractions and scores of the five rows
    points = sorted((r["params"]["fraction"], r["cells"][group["id"]]["metrics"]["cvbench_combined"]["value"],
                     r["id"]) for r in measured.values())
    expected = [rid for f, v, rid in points if not any(
        (of <= f and ov >= v and (of < f or ov > v)) for of, ov, _ in points)]
    assert group["pareto"] == expected
    assert all(r["cells"][group["id"]]["pareto"] == (r["id"] in expected) for r in measured.values())


def test_reported_rows_are_marked_and_never_mixed(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    doc = collect([results], zoo=zoo, reported=REPORTED)
    reported = _rows(doc, "reported")
    assert set(reported) == {"ReFT (LoReFT rank 4, all layers)", "LoRA (r 8)", "full fine-tuning"}
    reft = reported["ReFT (LoReFT rank 4, all layers)"]
    assert math.isclose(reft["params"]["fraction"], 0.00019) and reft["params"]["source"] == "reported"
    (cell,) = reft["cells"].values()
    assert cell["metrics"]["accuracy"]["value"] == 0.657 and cell["metrics"]["accuracy"]["note"] == "as published"
    board = next(b for b in doc["boards"] if b["kind"] == "reported")
    assert board["source"]["url"] and set(board["rows"]) == {r["id"] for r in reported.values()}
    reported_group = next(g for g in doc["groups"] if g["kind"] == "reported")
    measured_group = next(g for g in doc["groups"] if g["kind"] == "measured")
    assert set(reported_group["pareto"]) <= set(board["rows"])
    assert not set(measured_group["pareto"]) & set(board["rows"])
    outputs = render_outputs(doc)
    md = outputs["leaderboard.md"].decode()
    assert md.count("| *reported* |") == 3 and "**Reported** (not measured here)" in md
    csv_lines = outputs["leaderboard.csv"].decode().splitlines()
    assert sum(line.split(",")[1] == "reported" for line in csv_lines[1:] if "," in line) == 3


def test_different_task_version_lands_in_a_separate_group_or_is_refused(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_run(results / "lora-v2", "20260201_000000", adapter="lora-r8", version=2.0, accuracy=0.7)
    doc = collect([results], zoo=zoo)
    groups = [g for g in doc["groups"] if g["task"] == "cvbench_mini"]
    assert len(groups) == 2
    assert sorted(g["label"] for g in groups) == ["cvbench_mini [task version 1.0]", "cvbench_mini [task version 2.0]"]
    assert any("task version: 1.0 vs 2.0" in note for note in doc["notes"])
    lora = _rows(doc)["lora-r8"]
    assert len(lora["cells"]) == 2  # one row, two cells, never averaged or overwritten
    with pytest.raises(LeaderboardError, match=r"cvbench_mini.*not comparable: task version: 1.0 vs 2.0"):
        collect([results], zoo=zoo, strict=True)


def test_different_prompt_or_base_makes_separate_boards_or_is_refused(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_run(results / "sys", "20260301_000000", adapter="lora-r8", template="SYSTEM\n" + TEMPLATE)
    doc = collect([results], zoo=zoo)
    measured_boards = [b for b in doc["boards"] if b["kind"] == "measured"]
    assert len(measured_boards) == 2 and any("prompt template" in n for n in doc["notes"])
    assert {b["label"] for b in measured_boards} == {"nanollava-tiny", "nanollava-tiny #2"}
    with pytest.raises(LeaderboardError, match="prompt template"):
        collect([results], zoo=zoo, strict=True)

    other = tmp_path / "other"
    write_run(other / "x", "20260301_000000", base_hash="c" * 64)
    write_run(other / "y", "20260301_000001", base_hash="d" * 64)
    with pytest.raises(LeaderboardError, match="base model hash"):
        collect([other], strict=True)


def test_other_task_settings_are_named_in_the_refusal(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_run(results / "post", "20260301_000000", adapter="lora-r8", post_prompt="\nAnswer briefly.")
    with pytest.raises(LeaderboardError, match=r"task prompt \(pre/post prompt\)"):
        collect([results], zoo=zoo, strict=True)
    limited = tmp_path / "limited"
    write_run(limited / "a", "20260301_000000", n=60)
    write_run(limited / "b", "20260301_000001", adapter="lora-r8", n=30, limit=30)
    with pytest.raises(LeaderboardError, match=r"--limit: .*number of items: (30 vs 60|60 vs 30)"):
        collect([limited], zoo=zoo, strict=True)


def test_duplicate_runs_and_different_inputs_are_refused(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_run(results / "again", "20260401_000000", adapter="lora-r8", accuracy=0.9)
    with pytest.raises(LeaderboardError, match="duplicate results for zoo/weights/lora-r8"):
        collect([results], zoo=zoo)
    results2, zoo2 = standard_inputs(tmp_path / "b")
    write_run(results2 / "new", "20260401_000000", adapter="new-one", inputs_salt=" (other wording)")
    write_card(zoo2, "new-one", "lora", 1000)
    with pytest.raises(LeaderboardError, match="different evaluated inputs"):
        collect([results2], zoo=zoo2)


def test_adapter_without_card_or_files_is_listed_with_unknown_params(tmp_path):
    results, zoo = standard_inputs(tmp_path)
    write_run(results / "orphan", "20260501_000000", adapter="orphan")
    doc = collect([results], zoo=zoo)
    orphan = _rows(doc)["orphan"]
    assert orphan["params"]["fraction"] is None and orphan["method"] == "unknown"
    assert any("orphan" in note and "parameters unknown" in note for note in doc["notes"])
    group = next(g for g in doc["groups"] if g["kind"] == "measured")
    assert orphan["id"] not in group["pareto"]


def test_caption_and_vqa_tasks_notes_and_intervals(tmp_path):
    results, zoo = standard_inputs(tmp_path, tasks=("cvbench_mini", "coco_captions_mini", "vqa_v2_mini"))
    write_run(results / "misc", "20260601_000000", task="mmmu_val")
    doc = collect([results], zoo=zoo)
    assert [g["task"] for g in doc["groups"]] == ["cvbench_mini", "coco_captions_mini", "vqa_v2_mini"]
    assert any("mmmu_val skipped" in n for n in doc["notes"])
    by_task = {g["task"]: g for g in doc["groups"]}
    lora = _rows(doc)["lora-r8"]
    caption = lora["cells"][by_task["coco_captions_mini"]["id"]]
    assert caption["metrics"]["CIDEr"]["value"] == 0.6 and caption["metrics"]["CIDEr"]["ci95"] is None
    assert caption["ci_note"].startswith("n/a: corpus metric")
    assert caption["metrics"]["SPICE"]["value"] is None and "SPICE unavailable" in caption["metrics"]["SPICE"]["note"]
    vqa = lora["cells"][by_task["vqa_v2_mini"]["id"]]["metrics"]["vqa_accuracy"]
    assert vqa["ci95"][0] <= vqa["value"] <= vqa["ci95"][1]
    md = render_outputs(doc)["leaderboard.md"].decode()
    assert "n/a (SPICE unavailable)" in md and "coco_captions_mini CIDEr" in md


def test_no_sample_log_means_no_interval(tmp_path):
    results, zoo = tmp_path / "r", tmp_path / "z"
    write_run(results / "a", "20260101_000000", samples=False)
    doc = collect([results], zoo=zoo if zoo.exists() else None)
    (row,) = doc["rows"]
    (cell,) = row["cells"].values()
    assert cell["metrics"]["cvbench_combined"]["ci95"] is None and cell["ci_note"] == "n/a: no sample log"


# --- outputs ----------------------------------------------------------------------------------------------------


def test_rebuild_is_byte_identical_and_writes_every_output(tmp_path):
    results, zoo = standard_inputs(tmp_path, tasks=("cvbench_mini", "vqa_v2_mini"))
    out = tmp_path / "out"
    build([results], out, zoo=zoo, reported=REPORTED)
    first = {name: (out / name).read_bytes() for name in OUTPUTS}
    build([results], out, zoo=zoo, reported=REPORTED)
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == first
    assert first["leaderboard.png"].startswith(b"\x89PNG") and b"<svg" in first["leaderboard.svg"]
    assert b"<dc:date>" not in first["leaderboard.svg"] and b"Matplotlib v" not in first["leaderboard.png"]
    assert json.loads(first["schema.json"]) == json.loads(json.dumps(SCHEMA))
    html = first["index.html"].decode()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert ' src="' not in html and "<link" not in html and "@import" not in html


def test_plot_labels_name_the_adapter_where_methods_repeat(tmp_path):
    from vlm_peft_bench.leaderboard.plots import _point_labels

    results, zoo = tmp_path / "results", tmp_path / "zoo"
    write_run(results / "base", "20260101_000000", accuracy=0.2, seed=1)
    # the factory's adapter hashes repeat the name: names differ in their first characters
    for k, (name, method) in enumerate((("all-lora__tiny__cv", "lora"), ("3D-lora__tiny__cv", "lora"),
                                        ("prefix-16__tiny__cv", "prefix"))):
        write_card(zoo, name, method, trainable=1000 * (k + 1))
        write_run(results / name, f"2026010{k + 2}_000000", adapter=name, accuracy=0.3 + 0.1 * k, seed=k + 2)
    doc = collect([results], zoo=zoo)
    (group,) = doc["groups"]
    points = [{"row": r} for r in doc["rows"]]
    assert sorted(_point_labels(points, reported=False).values()) == ["3D-lora", "all-lora", "base", "prefix"]
    assert "base (reported)" in _point_labels(points, reported=True).values()


def test_cli_build_and_strict_refusal(tmp_path, capsys):
    results, zoo = standard_inputs(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        main(["leaderboard", "build", "--results", str(results), "--zoo", str(zoo), "--out", str(out)])
    assert done.value.code == 0 and (out / "index.html").is_file()
    assert "5 measured and 0 reported rows in 1 groups" in capsys.readouterr().out
    write_run(results / "v2", "20260201_000000", adapter="lora-r8", version=2.0)
    with pytest.raises(SystemExit) as done:
        main(["leaderboard", "build", "--results", str(results), "--out", str(out), "--strict"])
    assert done.value.code == 2 and "not comparable: task version: 1.0 vs 2.0" in capsys.readouterr().err


# --- the committed leaderboard ----------------------------------------------------------------------------------

COMMITTED = REPO / "leaderboard"


@pytest.mark.skipif(not (COMMITTED / "leaderboard.json").is_file(), reason="no committed leaderboard yet")
def test_committed_leaderboard_is_exactly_what_the_build_makes(tmp_path):
    """leaderboard/ is generated, never hand-edited: rebuilding from the committed results changes no byte."""
    committed = json.loads((COMMITTED / "leaderboard.json").read_text())
    doc = collect([COMMITTED / "results"], zoo=REPO / "adapters_zoo", reported=COMMITTED / "reported.yaml",
                  command=committed["command"])
    outputs = render_outputs(doc)
    plots = [name for name in outputs if name.endswith((".png", ".svg"))]
    stale = [name for name, content in outputs.items() if (COMMITTED / name).read_bytes() != content]
    fix = "run `bash leaderboard/build.sh` (and, if the zoo changed, `bash leaderboard/run_zoo.sh` first)"
    assert not [n for n in stale if n not in plots], f"{stale} differ from a rebuild: {fix}"
    measured = [r for r in doc["rows"] if r["kind"] == "measured"]
    assert all(r["params"]["fraction"] is not None for r in measured), "a committed run matches no zoo card"
    captions = [g["id"] for g in doc["groups"] if g["task"].startswith("coco_captions")]
    for row in measured:  # the zoo is run with SPICE (run_zoo.sh refuses to start without it)
        for group in captions:
            spice = row["cells"][group]["metrics"]["SPICE"]
            assert isinstance(spice["value"], float) and spice["ci95"][0] <= spice["value"] <= spice["ci95"][1], (
                f"{row['method']}: SPICE {spice}: {fix}")
    from vlm_peft_bench.leaderboard.plots import RENDERER

    drawn_by = [n for n in plots if RENDERER.encode() not in (COMMITTED / n).read_bytes()]
    if drawn_by:  # another matplotlib draws other bytes: compare the plots only under the one that made them
        pytest.skip(f"{drawn_by} were drawn by another matplotlib than this one ({RENDERER}); every other output "
                    "matched its rebuild")
    assert not stale, f"{stale} differ from a rebuild: {fix}"

