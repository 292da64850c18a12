"""`train --where FIELD=VALUE`: train on a subset of the training split (the 2D/3D arithmetic demonstration)."""

import pytest

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.train import trainer
from vlm_peft_bench.train.data import load_task, parse_where, split_train_validation, subset, task_examples


@pytest.fixture(scope="module")
def examples():
    return task_examples(load_task("cvbench_mini"))


def test_subset_keeps_exactly_the_items_with_the_value(examples):
    two_d = subset(examples, "type", "2D", "cvbench_mini")
    three_d = subset(examples, "type", "3D", "cvbench_mini")
    assert two_d and three_d and len(two_d) + len(three_d) == len(examples)
    assert {e.doc["type"] for e in two_d} == {"2D"} and {e.doc["type"] for e in three_d} == {"3D"}


@pytest.mark.parametrize("where, message", [
    ("type", "expected FIELD=VALUE"), ("=2D", "expected FIELD=VALUE"), ("type=", "expected FIELD=VALUE")])
def test_malformed_where_is_named(where, message):
    with pytest.raises(AdapterError, match=message):
        parse_where(where)


def test_unknown_field_and_absent_value_name_what_there_is(examples):
    with pytest.raises(AdapterError, match="no field 'kind'.*type"):
        subset(examples, "kind", "2D", "cvbench_mini")
    with pytest.raises(AdapterError, match="no training item of cvbench_mini.*type takes 2D, 3D"):
        subset(examples, "type", "4D", "cvbench_mini")


def test_malformed_where_fails_before_a_model_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "load_nanollava", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(AdapterError, match="expected FIELD=VALUE"):
        trainer.train("lora-r8", "cvbench_mini", tmp_path / "a", overrides={"where": "type2D"}, card_dir=None)


@pytest.mark.slow
def test_train_where_fits_on_the_subset_only_and_names_it(tmp_path, monkeypatch, examples):
    seen = []
    real_fit = trainer._fit

    def recording_fit(method, train_set, *args, **kwargs):
        seen.extend(train_set)
        return real_fit(method, train_set, *args, **kwargs)

    monkeypatch.setattr(trainer, "_fit", recording_fit)
    card = trainer.train("lora-r8", "cvbench_mini", tmp_path / "a", overrides={"where": "type=2D"},
                         limit=8, evaluate_test=False, card_dir=tmp_path / "cards")
    expected, _ = split_train_validation(subset(examples, "type", "2D", "cvbench_mini"), 0)
    assert [e.doc for e in seen] == [e.doc for e in expected[:8]]
    assert card["id"] == "lora-r8-type2D__nanollava-tiny__cvbench_mini"
    assert card["overrides"] == {"where": "type=2D"}
    assert card["task"]["train"] == "training split where type=2D, seeded 80% (8 items)"
    assert (tmp_path / "cards" / f"{card['id']}.yaml").is_file()
