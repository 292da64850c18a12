"""SPICE's interval: our `lmms_eval` records the per-image SPICE scores of a caption task in the results file, and the
leaderboard resamples them (SPICE is the plain mean of independent per-image F-scores, so this re-scores exactly).
The scorer itself is simulated here; tests/test_spice_real.py runs the real one."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from vlm_peft_bench import scoring
from vlm_peft_bench.leaderboard.build import collect, render_outputs
from vlm_peft_bench.leaderboard.problems import BadInputs
from vlm_peft_bench.lmms import caption_vqa_metrics as cvm
from vlm_peft_bench.lmms.cli import add_provenance, caption_per_item

from .test_leaderboard_factory import write_run

STAMP = "20260101_000000"
TASK = "coco_captions_mini"


def _spice(n: int = 80, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.random() * 0.4, 6) for _ in range(n)]


def _cell(results):
    doc = collect([results])
    (row,) = [r for r in doc["rows"] if r["kind"] == "measured"]
    (cell,) = row["cells"].values()
    return doc, cell


def _edit_block(path, change):
    data = json.loads(path.read_text())
    change(data["vlm_peft_bench"])
    path.write_text(json.dumps(data))


def test_spice_gets_a_bootstrap_interval_from_its_per_image_scores(tmp_path):
    spice = _spice()
    write_run(tmp_path / "r" / "a", STAMP, task=TASK, n=len(spice), spice=spice)
    doc, cell = _cell(tmp_path / "r")
    metric = cell["metrics"]["SPICE"]
    mean = sum(spice) / len(spice)
    assert metric["value"] == round(mean, 4) and metric["note"] is None
    low, high = metric["ci95"]
    # independent check: with 80 items the percentile bootstrap of a mean is close to mean -/+ 1.96 standard errors
    se = statistics.stdev(spice) / math.sqrt(len(spice))
    assert low < mean < high
    assert abs((mean - low) - 1.96 * se) < 0.25 * se and abs((high - mean) - 1.96 * se) < 0.25 * se
    for other in ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L"):
        assert cell["metrics"][other]["ci95"] is None
    assert cell["ci_note"].startswith("n/a: corpus metrics (an interval would need re-scoring): CIDEr, Bleu_4")
    assert cell["ci_note"].endswith("SPICE: bootstrap over its per-image scores")
    assert _cell(tmp_path / "r")[1]["metrics"]["SPICE"]["ci95"] == [low, high]  # seeded: the same every build
    outputs = render_outputs(doc)
    assert f"| {mean:.3f} ({low:.3f}-{high:.3f}) |" in outputs["leaderboard.md"].decode()
    assert f"{low}" in outputs["leaderboard.csv"].decode()


@pytest.mark.parametrize("change, expected", [
    (lambda block: block.pop("per_item"), "no per-item scores in the results file; run with --log_samples"),
    (lambda block: block["per_item"][TASK]["SPICE"].popitem(), "79 per-item scores for 80 items"),
    (lambda block: block["per_item"][TASK]["SPICE"].update({"0": 0.99}), "the per-item scores do not reproduce it"),
])
def test_per_image_scores_that_do_not_fit_give_no_interval_and_say_why(tmp_path, change, expected):
    path = write_run(tmp_path / "r" / "a", STAMP, task=TASK, n=80, spice=_spice())
    _edit_block(path, change)
    _, cell = _cell(tmp_path / "r")
    assert cell["metrics"]["SPICE"]["ci95"] is None and cell["metrics"]["SPICE"]["value"] is not None
    assert cell["ci_note"].endswith(f"SPICE: n/a ({expected})")


def test_malformed_per_item_scores_are_refused_naming_the_field(tmp_path):
    path = write_run(tmp_path / "r" / "a", STAMP, task=TASK, n=80, spice=_spice())
    _edit_block(path, lambda block: block["per_item"][TASK]["SPICE"].update({"5": "high"}))
    with pytest.raises(BadInputs) as refused:
        collect([tmp_path / "r"])
    (problem,) = refused.value.problems
    assert f"'vlm_peft_bench.per_item.{TASK}.SPICE' has 1 item(s) whose score is not a number (first: '5')" in (
        problem.what)


def _caption_records(predictions: list[str]) -> list[dict]:
    docs = [{"question_id": 10 + i, "id": 100 + i, "answer": ["a cat", "a small cat"]} for i in range(len(predictions))]
    return [cvm.caption_record(doc, [p]) for doc, p in zip(docs, predictions)]


def test_lmms_eval_records_the_per_image_scores_of_the_logged_caption_records(tmp_path, monkeypatch):
    """From the scoring pass to the results file: the scores kept for these records, under their ids, once."""
    def fake(predictions, references, *args, **kwargs):
        per_image = {item: 0.1 * (k + 1) for k, item in enumerate(predictions)}
        scores = {m: 0.5 for m in scoring.CAPTION_METRICS[:-1]} | {"SPICE": sum(per_image.values()) / len(per_image)}
        return scoring.CaptionReport(scores, {"SPICE": per_image})

    monkeypatch.setattr(scoring, "caption_report", fake)
    monkeypatch.setattr(cvm, "_cache", type(cvm._cache)())
    monkeypatch.setattr(cvm, "_per_item", {})
    records = _caption_records(["a cat", "a dog", "two cats"])
    assert cvm.corpus_caption_scores(records)["SPICE"] == pytest.approx(0.2)
    logged = [{"doc_id": i, **{m: r for m in scoring.CAPTION_METRICS}} for i, r in enumerate(records)]
    samples = {TASK: logged, "vqa_v2_mini": [{"doc_id": 0, "vqa_accuracy": 1.0}]}
    per_item = caption_per_item(samples)
    assert per_item == {TASK: {"SPICE": {"10": 0.1, "11": 0.2, "12": pytest.approx(0.3)}}}
    assert caption_per_item(samples) == {}  # handed over once
    assert caption_per_item(None) == {}  # without --log_samples nothing identifies the records

    path = write_run(tmp_path, STAMP, task=TASK, n=3)
    add_provenance(path, "pretrained=nanollava-tiny", [], {**per_item, "other_task": {"SPICE": {"1": 0.5}}})
    block = json.loads(path.read_text())["vlm_peft_bench"]
    assert block["per_item"] == {TASK: {"SPICE": {"10": 0.1, "11": 0.2, "12": pytest.approx(0.3)}}}
