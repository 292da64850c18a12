"""VQAv2 accuracy: the official vqaEval.py semantics (GT-Vision-Lab/VQA master), pinned case by case."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_peft_bench.scoring import vqa_accuracy, vqa_corpus_accuracy
from vlm_peft_bench.scoring.vqa import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)


def ten(match: str, k: int, other: str = "no") -> list[str]:
    """Ten human answers, `k` of them `match` (first) and the rest `other`."""
    return [match] * k + [other] * (10 - k)


# --- matching and leave-one-out ------------------------------------------------------------------------------


def test_identical_answers_are_not_normalized_so_case_matters():
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    # Newlines, tabs and surrounding spaces go in every case.
    assert vqa_accuracy("\tyes \n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("yes", [" yes\n"] * 10) == 1.0


@pytest.mark.parametrize(("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_matches_among_ten(k, expected):
    assert vqa_accuracy("yes", ten("yes", k)) == pytest.approx(expected, abs=1e-12)


def test_leave_one_out_is_by_position_not_by_value():
    answers = ten("yes", 2)
    # By position: 8 subsets keep both "yes" (2/3), 2 subsets keep one (1/3): (8*2/3 + 2/3) / 10 = 0.6.
    assert vqa_accuracy("yes", answers) == pytest.approx(0.6)
    # Leaving out by value (lmms-eval's variant) would drop both "yes" at once and give (8*2/3) / 10.
    assert vqa_accuracy("yes", answers) != pytest.approx(8 * (2 / 3) / 10)


def test_other_answer_counts_use_the_same_formula():
    assert vqa_accuracy("yes", ["yes"]) == 0.0  # nothing is left once the only answer is left out
    assert vqa_accuracy("yes", ["yes", "yes"]) == pytest.approx(1 / 3)
    assert vqa_accuracy("yes", ["yes", "yes", "yes"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("yes", ["yes"] * 4) == 1.0
    assert vqa_accuracy("yes", ["yes", "yes", "no"]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)


# --- normalization, applied only when the humans disagree ----------------------------------------------------


def test_number_words_become_digits():
    assert vqa_accuracy("two", ten("2", 3, "3")) == pytest.approx(0.9)
    assert vqa_accuracy("2", ten("Two", 4, "three")) == 1.0
    assert vqa_accuracy("none", ten("0", 4, "1")) == 1.0
    assert process_digit_article("Ten") == "10"
    assert process_digit_article("eleven") == "eleven"  # the table stops at ten


def test_articles_are_dropped():
    assert vqa_accuracy("a dog", ten("dog", 3, "cat")) == pytest.approx(0.9)
    assert vqa_accuracy("The red one", ten("red one", 4, "blue")) == 1.0
    assert process_digit_article("an apple a day") == "apple day"


def test_contractions_are_restored():
    assert vqa_accuracy("dont", ten("don't", 4, "no")) == 1.0
    assert process_digit_article("isnt") == "isn't"
    # The official table's quirks stay: capitalised keys never match after lower-casing, "somebody'd" loses its '.
    assert process_digit_article("Im") == "im"
    assert process_digit_article("somebody'd") == "somebodyd"


def test_punctuation_rules():
    assert process_punctuation("1,000") == "1000"  # a digit-comma-digit: every mark is deleted
    assert process_punctuation("1,000 people, yes") == "1000 people yes"
    assert process_punctuation("a,b") == "a b"  # a mark touching no space becomes a space
    assert process_punctuation("a, b") == "a b"  # a mark touching a space is deleted
    assert process_punctuation("3.5") == "3.5"  # a period before a digit stays
    assert process_punctuation("yes.") == "yes"  # any other period goes
    assert process_punctuation("e.g.") == "eg"
    assert process_punctuation("it's") == "it's"  # apostrophes are not in the list
    assert vqa_accuracy("1,000", ten("1000", 3, "10")) == pytest.approx(0.9)
    assert vqa_accuracy("yes!", ten("yes", 4)) == 1.0


def test_period_stripping_stops_after_32_periods():
    # The official passes re.UNICODE (32) where `count` goes: only the first 32 periods are removed.
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("a." * 33) == "a" * 32 + "a."


def test_official_tables():
    assert PUNCTUATION == tuple(';/[]"{}()=+\\_-><@`,?!')
    digits = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
    assert NUMBER_WORDS == {"none": "0", **digits}
    assert ARTICLES == ("a", "an", "the")
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["yall'd've"] == "y'all'd've" and CONTRACTIONS["twas"] == "'twas"


# --- errors and corpus ---------------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match="at least one human answer"):
        vqa_accuracy("yes", [])
    with pytest.raises(TypeError, match="list of strings"):
        vqa_accuracy("yes", "yes")
    with pytest.raises(TypeError, match="must be a string"):
        vqa_accuracy(None, ["yes"])


def test_corpus_accuracy_is_the_mean_and_checks_ids():
    answers = {1: ten("yes", 10), 2: ten("2", 3, "3"), "q3": ten("red", 2, "blue")}
    predictions = {1: "yes", 2: "two", "q3": "red"}
    assert vqa_corpus_accuracy(predictions, answers) == pytest.approx((1.0 + 0.9 + 0.6) / 3)
    with pytest.raises(ValueError, match=r"no prediction: 'q3'"):
        vqa_corpus_accuracy({1: "yes", 2: "2"}, answers)
    with pytest.raises(ValueError, match=r"no answers: 7"):
        vqa_corpus_accuracy({**predictions, 7: "x"}, answers)
    with pytest.raises(ValueError, match="no questions"):
        vqa_corpus_accuracy({}, {})


# --- the official evaluate() loop, transcribed, against ours on generated answers -----------------------------

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")


def _official_process_punctuation(inText):
    outText = inText
    for p in PUNCTUATION:
        if (p + " " in inText or " " + p in inText) or (re.search(_COMMA_STRIP, inText) != None):  # noqa: E711
            outText = outText.replace(p, "")
        else:
            outText = outText.replace(p, " ")
    outText = _PERIOD_STRIP.sub("", outText, re.UNICODE)  # noqa: B034 - the official's positional flag, on purpose
    return outText


def _official_process_digit_article(inText):
    manual_map = dict(NUMBER_WORDS)
    outText = []
    for word in inText.lower().split():
        word = manual_map.setdefault(word, word)
        if word not in ARTICLES:
            outText.append(word)
    for wordId, word in enumerate(outText):
        if word in CONTRACTIONS:
            outText[wordId] = CONTRACTIONS[word]
    return " ".join(outText)


def _official_accuracy(resAns, answers):
    """The per-question body of vqaEval.evaluate() (master), on answer dicts as in the annotation files."""
    gts = [{"answer": a, "answer_id": i + 1, "answer_confidence": "yes"} for i, a in enumerate(answers)]
    for ansDic in gts:
        ansDic["answer"] = ansDic["answer"].replace("\n", " ").replace("\t", " ").strip()
    resAns = resAns.replace("\n", " ").replace("\t", " ").strip()
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in gts]
    if len(set(gtAnswers)) > 1:
        for ansDic in gts:
            ansDic["answer"] = _official_process_punctuation(ansDic["answer"])
            ansDic["answer"] = _official_process_digit_article(ansDic["answer"])
        resAns = _official_process_punctuation(resAns)
        resAns = _official_process_digit_article(resAns)
    for gtAnsDatum in gts:
        otherGTAns = [item for item in gts if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return float(sum(gtAcc)) / len(gtAcc)


_WORDS = ["yes", "Yes", "no", "two", "2", "Two", "a", "the", "dog", "dogs", "dont", "don't", "1,000", "1000", "3.5",
          "red", "isnt", "none", "0", "ten"]  # fmt: skip
_MARKS = list(".,;/!?()\"-' _\t\n") + [", ", " .", "..."]
_answer = st.lists(st.sampled_from(_WORDS + _MARKS), max_size=6).map("".join)
_free_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_text = st.one_of(_answer, _free_text)


@settings(max_examples=400, deadline=None)
@given(prediction=_text, answers=st.lists(_text, min_size=1, max_size=10))
def test_matches_a_transcription_of_the_official_loop(prediction, answers):
    ours = vqa_accuracy(prediction, answers)
    assert ours == _official_accuracy(prediction, answers)
    assert 0.0 <= ours <= 1.0


@settings(max_examples=300, deadline=None)
@given(prediction=_answer, answers=st.lists(_answer, min_size=2, max_size=10), at=st.integers(min_value=0))
def test_another_human_agreeing_never_lowers_accuracy(prediction, answers, at):
    before = vqa_accuracy(prediction, answers)
    changed = list(answers)
    changed[at % len(changed)] = prediction
    assert vqa_accuracy(prediction, changed) >= before


@settings(max_examples=300, deadline=None)
@given(text=_free_text)
def test_normalization_is_total_and_idempotent_on_its_output_words(text):
    once = normalize_answer(text)
    assert isinstance(once, str) and "\n" not in once and not once.startswith(" ")
    assert process_digit_article(once) == once
