import math

import pytest

from vlm_peft_bench.scoring.cvbench import cvbench_scores


def records(source, task, n_correct, n):
    return [{"source": source, "task": task, "correct": i < n_correct} for i in range(n)]


def test_official_formula_weights_sources_not_items():
    # ADE20K 3/4, COCO 1/2 (over 8 items), Omni3D 1/10: a plain mean over items would give 11/22 = 0.5.
    rs = records("ADE20K", "Count", 3, 4) + records("COCO", "Relation", 4, 8) + records("Omni3D", "Depth", 1, 10)
    s = cvbench_scores(rs)
    assert s["2d"] == pytest.approx((0.75 + 0.5) / 2)
    assert s["3d"] == pytest.approx(0.1)
    assert s["combined"] == pytest.approx(((0.75 + 0.5) / 2 + 0.1) / 2)
    assert s["accuracy"] == pytest.approx(8 / 22)
    assert s["task_count"] == pytest.approx(0.75)
    assert s["task_depth"] == pytest.approx(0.1)
    assert math.isnan(s["task_distance"])


def test_missing_sources_give_nan_not_partial_scores():
    s = cvbench_scores(records("ADE20K", "Count", 1, 2) + records("COCO", "Count", 2, 2))
    assert s["2d"] == pytest.approx(0.75)
    assert math.isnan(s["3d"]) and math.isnan(s["combined"])


def test_unknown_source_is_an_error():
    with pytest.raises(ValueError, match="unknown CV-Bench source"):
        cvbench_scores(records("KITTI", "Depth", 1, 1))
