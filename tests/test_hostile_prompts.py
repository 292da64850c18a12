"""Empty and very long prompts and empty generations: an answer for every request, recorded per-sample failures,
and the rest of the batch unaffected."""

import pytest
from lmms_eval.api.instance import Instance

from vlm_peft_bench.lmms.cli import _failures
from vlm_peft_bench.lmms.vlreft import BadSampleError

TASK = "cvbench_mini"
GREEDY = {"until": ["<|im_end|>"], "max_new_tokens": 6, "temperature": 0, "do_sample": False}


def visual(doc):
    return [doc["image"].convert("RGB")]


def request(context, doc_id, gen_kwargs=GREEDY, kind="generate_until", continuation=None):
    second = dict(gen_kwargs) if kind == "generate_until" else continuation
    return Instance(kind, (context, second, visual, doc_id, TASK, "test"), idx=0,
                    metadata={"task": TASK, "doc_id": doc_id, "repeats": 1})


def must_not_run(*args, **kwargs):
    raise AssertionError("a logged answer was computed again")


def test_empty_prompt_is_answered(make_model):
    [text] = make_model().generate_until([request("", 0)])
    assert isinstance(text, str)


def test_prompt_longer_than_the_context_is_a_recorded_failure_and_spares_its_batch(make_model, mini_test):
    model = make_model(batch_size=4)
    long_prompt = "describe the red cube " * 1000
    assert len(model.tokenizer(long_prompt)["input_ids"]) > model.context_length
    normal = [request(mini_test[i]["prompt"], i) for i in (1, 2, 3)]
    texts = model.generate_until([normal[0], request(long_prompt, 0), normal[1], normal[2]])
    assert texts[1] == ""
    alone = [model.generate_until([request(mini_test[i]["prompt"], i)])[0] for i in (1, 2, 3)]
    assert [texts[0], texts[2], texts[3]] == alone
    [failure] = model.recorded_failures()
    assert failure["doc_id"] == 0 and failure["task"] == TASK
    assert f"does not fit the model's context of {model.context_length} tokens" in failure["failure"]


def test_empty_generation_is_recorded_and_answered_with_empty_string(make_model, mini_test):
    model = make_model()
    [text] = model.generate_until([request(mini_test[5]["prompt"], 5)])
    assert text, "need a non-empty answer to stop in front of"
    [empty] = model.generate_until([request(mini_test[5]["prompt"], 5, {**GREEDY, "until": [text[0]]})])
    assert empty == ""
    assert model.recorded_failures() == [
        {"task": TASK, "doc_id": 5, "failure": "empty generation (scored as wrong)"}]


def test_failures_survive_a_resume_and_reach_the_results_block(make_model, mini_test, tmp_path):
    long_prompt = "where is the lamp " * 1000
    reqs = [request(mini_test[1]["prompt"], 1), request(long_prompt, 2)]
    first = make_model(answer_log=str(tmp_path)).generate_until(reqs)
    resumed = make_model(answer_log=str(tmp_path))
    assert len(resumed.answer_log.answers) == 2 and resumed.recorded_failures() == []
    resumed.runner.inputs = must_not_run
    assert resumed.generate_until([request(mini_test[1]["prompt"], 1), request(long_prompt, 2)]) == first
    block = _failures({"results": {TASK: {}, "other_task": {}}}, resumed.failures)
    assert [(f["task"], f["doc_id"]) for f in block["failures"]] == [(TASK, 2)]
    assert _failures({"results": {"other_task": {}}}, resumed.failures) == {}


def test_loglikelihood_beyond_the_context_names_the_document(make_model):
    model = make_model()
    with pytest.raises(BadSampleError, match=r"doc 4: prompt and continuation have \d+ tokens"):
        model.loglikelihood([request("a blue sphere " * 1000, 4, kind="loglikelihood", continuation=" (A)")])


def test_loglikelihood_answers_are_resumed_from_the_log(make_model, mini_test, tmp_path):
    reqs = [request(mini_test[i]["prompt"], i, kind="loglikelihood", continuation=" (A)") for i in (0, 1)]
    first = make_model(answer_log=str(tmp_path)).loglikelihood(reqs)
    again = make_model(answer_log=str(tmp_path))
    assert len(again.answer_log.answers) == 2
    again.runner.inputs = must_not_run
    assert again.loglikelihood(reqs) == first
