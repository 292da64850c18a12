"""The lmms-eval model class, driven the way lmms-eval drives it."""

import pytest
import torch
from lmms_eval.api.instance import Instance

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.lmms.vlreft import BadSampleError, VLReft
from vlm_peft_bench.runner import truncate_at

TASK = "cvbench_mini"
GREEDY = {"until": ["<|im_end|>"], "max_new_tokens": 8, "temperature": 0, "do_sample": False, "num_beams": 1}


def visual(doc):
    return [doc["image"].convert("RGB")]


def instance(kind, args):
    return Instance(kind, args, idx=0, metadata={"task": TASK, "doc_id": args[3], "repeats": 1})


def requests(docs, gen_kwargs=GREEDY, n=None, step=1):
    out = []
    for i in range(0, (n or len(docs)) * step, step):
        args = (docs[i]["prompt"], dict(gen_kwargs), visual, i, TASK, "test")
        out.append(instance("generate_until", args))
    return out


@pytest.mark.slow
def test_greedy_predictions_identical_at_batch_1_and_8(make_model, mini_test):
    reqs = requests(mini_test, n=48, step=6)  # spread over all four tasks
    one = make_model(batch_size=1).generate_until(reqs)
    eight = make_model(batch_size=8).generate_until(requests(mini_test, n=48, step=6))
    assert len(one) == 48
    assert sum(bool(t) for t in one) >= 5, "too few non-empty generations to compare"
    assert one == eight


def test_results_come_back_in_request_order(make_model, mini_test):
    model = make_model(batch_size=4)
    reqs = requests(mini_test, n=12)
    batched = model.generate_until(reqs)
    singles = [model.generate_until([r])[0] for r in requests(mini_test, n=12)]
    assert batched == singles


def test_max_new_tokens_and_until_are_honoured(make_model, mini_test):
    model = make_model(batch_size=4)
    texts = model.generate_until(requests(mini_test, {**GREEDY, "max_new_tokens": 2}, n=8))
    for t in texts:
        assert len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) <= 2
    assert truncate_at("abc STOP def", ["STOP", "de"]) == "abc "


# An open question: the tiny base answers in a few words ("the orange triangle"), not one letter, so beams and samples
# have room to differ from greedy decoding (on cvbench_mini's own prompts it answers a letter and the end token,
# which 2-4 beams never change on the items we scanned).
OPEN = "What is in the image?"
OPEN_GEN = {**GREEDY, "max_new_tokens": 12}
# Found by scanning every 50th doc with OPEN: on these three, greedy decoding stops short or loops ("the yellow
# circle yellow circleA") and 2, 3 or 4 beams return another answer, alike on transformers 4.45 and 5; on the
# other 13 scanned docs beams and greedy agree.
BEAM_DOCS = (50, 550, 750)


def open_requests(doc_ids, gen_kwargs):
    return [instance("generate_until", (OPEN, dict(gen_kwargs), visual, i, TASK, "test")) for i in doc_ids]


def mean_logprob(model, doc_id, text, max_new_tokens):
    """Log-probability per token of `text` as the answer, counting the end token when the answer ended before
    `max_new_tokens`: the score beam search ranks its finished answers by (length_penalty 1)."""
    n = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    ended = n < max_new_tokens
    continuation = text + "<|im_end|>" if ended else text
    args = (OPEN, continuation, visual, doc_id, TASK, "test")
    [(logprob, _)] = model.loglikelihood([instance("loglikelihood", args)])
    return logprob / (n + ended)


def test_beam_search_changes_answers_to_higher_scoring_ones(make_model):
    model = make_model(batch_size=2)
    greedy = model.generate_until(open_requests(BEAM_DOCS, OPEN_GEN))
    beams = model.generate_until(open_requests(BEAM_DOCS, {**OPEN_GEN, "num_beams": 3}))
    changed = [(doc_id, g, b) for doc_id, g, b in zip(BEAM_DOCS, greedy, beams) if g != b]
    assert changed, f"num_beams=3 changed none of {greedy}: the beams did not reach generation"
    for doc_id, g, b in changed:
        beam_score, greedy_score = (mean_logprob(model, doc_id, t, OPEN_GEN["max_new_tokens"]) for t in (b, g))
        assert beam_score > greedy_score, f"doc {doc_id}: beams chose {b!r} ({beam_score:.3f}) over {g!r}"


def test_sampling_follows_the_seed_and_is_not_greedy(make_model):
    model = make_model(batch_size=4)
    docs = range(0, 400, 50)
    sampling = {**OPEN_GEN, "temperature": 1.0, "do_sample": True}

    def sampled(seed):
        torch.manual_seed(seed)  # what lmms-eval's --seed does before the run
        return model.generate_until(open_requests(docs, sampling))

    first, again, other = sampled(0), sampled(0), sampled(1)
    greedy = model.generate_until(open_requests(docs, OPEN_GEN))
    assert first == again, "the same seed must give the same samples"
    assert first != other, "two seeds gave the same answers on every item"
    assert first != greedy and other != greedy, "sampling gave the greedy answers: do_sample was dropped"


def test_loglikelihood_matches_a_direct_forward(make_model, mini_test):
    model = make_model()
    doc = mini_test[0]
    args = (doc["prompt"], " (A)", visual, 0, TASK, "test")
    (logprob, greedy), = model.loglikelihood([instance("loglikelihood", args)])
    proc = model.processor
    prompt_ids = proc.encode([proc.prompt(doc["prompt"])])[0]
    full = proc.encode([proc.prompt(doc["prompt"])], [" (A)"])[0]
    inputs = proc.pad_left([full])
    inputs["pixel_values"] = proc.pixel_values([doc["image"]])
    with torch.no_grad():
        logits = model.model(**inputs).logits[0]
    expected = sum(
        torch.log_softmax(logits[pos - 1], -1)[full[pos]].item() for pos in range(len(prompt_ids), len(full))
    )
    assert logprob == pytest.approx(expected, abs=1e-4)
    assert isinstance(greedy, bool)


def test_unknown_model_args_are_named():
    with pytest.raises(ValueError, match="unknown model_args \\['temprature'\\]"):
        VLReft(temprature=0.5)


def test_adapter_argument_is_validated(tmp_path):
    with pytest.raises(AdapterError, match="no such folder"):
        VLReft(adapter=str(tmp_path / "missing"))
    (tmp_path / "junk").mkdir()
    with pytest.raises(AdapterError, match="not a recognised adapter folder"):
        VLReft(adapter=str(tmp_path / "junk"))
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterError, match="no `peft_type`"):
        VLReft(adapter=str(lora))


def test_unreadable_image_names_the_row(make_model, mini_test):
    model = make_model()

    def broken(doc):
        raise OSError("image file is truncated")

    args = ("q", dict(GREEDY), broken, 3, TASK, "test")
    with pytest.raises(BadSampleError, match="task cvbench_mini, split test, doc 3: its image cannot be read"):
        model.generate_until([instance("generate_until", args)])
