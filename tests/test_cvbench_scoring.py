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


# --- one source for CV-Bench's metric names and prompt suffix ----------------------------------------------------


def test_metric_table_covers_exactly_what_the_scorer_computes():
    from vlm_peft_bench.scoring.cvbench import METRICS, SCORE_KEYS

    rs = records("ADE20K", "Count", 1, 2) + records("COCO", "Relation", 1, 2) + records("Omni3D", "Depth", 1, 2)
    assert set(SCORE_KEYS.values()) == set(cvbench_scores(rs))
    assert len({m.name for m in METRICS}) == len(METRICS)
    assert [m.name for m in METRICS if m.official] == ["cvbench_combined", "cvbench_2d", "cvbench_3d"]


def test_a_part_reports_only_the_metrics_its_items_define():
    """A metric is in a part's list exactly when the scorer gives it a number on that part's items alone."""
    from vlm_peft_bench.scoring.cvbench import SCORE_KEYS, metrics_for

    only_2d = records("ADE20K", "Count", 1, 2) + records("COCO", "Relation", 1, 2)
    only_3d = records("Omni3D", "Depth", 1, 2) + records("Omni3D", "Distance", 1, 2)
    for part, items in (("2D", only_2d), ("3D", only_3d)):
        scores = cvbench_scores(items)
        defined = {name for name, key in SCORE_KEYS.items() if not math.isnan(scores[key])}
        assert {m.name for m in metrics_for([part])} == defined
    assert {m.name for m in metrics_for(["2D", "3D"])} == set(SCORE_KEYS)
    with pytest.raises(ValueError, match=r"parts \['4D'\]"):
        metrics_for(["4D"])


def test_task_yamls_name_no_metric_or_prompt_and_the_tasks_get_them_from_the_table(monkeypatch):
    from lmms_eval.tasks import TaskManager, get_task_dict

    from vlm_peft_bench.leaderboard.tasks import spec_for
    from vlm_peft_bench.paths import tasks_dir
    from vlm_peft_bench.scoring.cvbench import POST_PROMPT, metrics_for

    from .conftest import MINI

    folder = tasks_dir() / "cvbench"
    for path in [*folder.glob("*.yaml"), folder / "_cvbench_template_yaml"]:
        text = path.read_text()
        assert "metric_list" not in text and "Answer with" not in text and "aggregat" not in text, path.name
    for env in ("VLM_PEFT_BENCH_CVBENCH", "VLM_PEFT_BENCH_CVBENCH_2D", "VLM_PEFT_BENCH_CVBENCH_3D"):
        monkeypatch.setenv(env, str(MINI / "test.parquet"))
    parts = {"cvbench": ["2D", "3D"], "cvbench_mini": ["2D", "3D"], "cvbench_2d": ["2D"], "cvbench_3d": ["3D"]}
    tasks = get_task_dict(list(parts), TaskManager("ERROR", include_path=[str(tasks_dir())]))
    doc = next(iter(tasks["cvbench_mini"].test_docs()))
    for name, task in tasks.items():
        expected = [m.name for m in metrics_for(parts[name])]
        assert [c["metric"] for c in task.config.metric_list] == expected
        assert list(task.aggregation()) == expected
        assert "parts" not in task.config.metadata  # consumed: the results' config records the metric list
        assert task.doc_to_text(doc) == doc["prompt"] + POST_PROMPT
        assert task.config.lmms_eval_specific_kwargs["default"] == {"pre_prompt": "", "post_prompt": POST_PROMPT}
        spec = spec_for(name)
        assert spec.headline == expected[0] and set(spec.extra) <= set(expected)
