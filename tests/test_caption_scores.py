"""caption_scores: the numbers of pycocoevalcap's COCOEvalCap pipeline, computed once, offline, without leaks.

Java runs here (PTB tokenizer, METEOR); tests that need it skip with the reason when `java` is missing. METEOR's
JVM takes seconds to start, so one serves the module: pycocoevalcap's own line-by-line protocol, our pipelined one
and the end-to-end caption_scores call all talk to it.
"""

import os
import random
import shutil
import threading
import time

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.metrics import BLEU

import vlm_peft_bench.scoring.captions as captions
from vlm_peft_bench.scoring import CAPTION_METRICS, caption_scores

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no `java` on PATH: PTB tokenizer and METEOR")
ALL_BUT_SPICE = [m for m in CAPTION_METRICS if m != "SPICE"]

PREDICTIONS = {
    "img1": "A man riding a horse on the beach.",
    "img2": "",
    "img3": 'Two dogs play with a "frisbee" (outside) -- fun!',
    "img4": "It's 3.5 dollars, 1,000 people...",
    5: "Café naïve crème brûlée",
    6: "a kitchen with a stove and a sink",
    7: "A BUS PARKED ON THE STREET",
    8: "A cat sitting on a laptop keyboard.",
}
REFERENCES = {
    "img1": ["A man rides a horse along the beach.", "A person on horseback near the ocean.", "a man on a horse"],
    "img2": ["A plate of food on a table.", "Some food on a white plate."],
    "img3": ["Two dogs playing with a frisbee outside.", "dogs, playing! (with a frisbee)", "Two dogs' toy."],
    "img4": ["A crowd of 1,000 people.", "A sign that says 3.50 dollars."],
    5: ["A cafe with a cake.", "Crème brûlée on a plate."],
    6: ["A kitchen with a stove, a sink and a fridge.", "A small kitchen with a white stove."],
    7: ["A bus parked on the street.", "A city bus stopped at the curb."],
    8: ["A cat sitting on a laptop keyboard.", "A cat lies on a computer."],
}


class _BorrowedMeteor(Meteor):
    """pycocoevalcap's Meteor (line, answer, line, ...) talking to an already running METEOR process."""

    def __init__(self, process):
        self.meteor_p = process
        self.lock = threading.Lock()

    def __del__(self):  # the process belongs to the fixture
        pass


class _SharedMeteor:
    """Stands for MeteorProcess inside caption_scores: scores on the module's JVM and records how it was closed."""

    def __init__(self, jvm, log):
        self._jvm, self._log = jvm, log
        log.append("started")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self._log.append("closed" if exc_type is None else "killed")

    def score(self, hyps, refs):
        return self._jvm.score(hyps, refs)


@pytest.fixture(scope="module")
def meteor_jvm():
    if shutil.which("java") is None:
        pytest.skip("no `java` on PATH: METEOR")
    process = captions.MeteorProcess()
    yield process
    process.close()
    assert process._proc.poll() is not None, "closing stdin did not end METEOR"


@pytest.fixture(scope="module")
def ours(meteor_jvm):
    """One end-to-end caption_scores call, and how it opened and closed METEOR."""
    log = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(captions, "MeteorProcess", lambda: _SharedMeteor(meteor_jvm, log))
        scores = caption_scores(PREDICTIONS, REFERENCES, metrics=ALL_BUT_SPICE)
    return scores, log


@pytest.fixture(scope="module")
def coco_reference(meteor_jvm):
    """What COCOEvalCap.evaluate() computes, scorer by scorer, with pycocoevalcap's own tokenizer and protocol."""
    if not os.access(captions.PTB_JAR.parent, os.W_OK):
        pytest.skip(f"pycocoevalcap's PTBTokenizer writes its temp file into {captions.PTB_JAR.parent}: read-only here")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": PREDICTIONS[k]}] for k in REFERENCES})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], bleu))
    scores["METEOR"], per_caption = _BorrowedMeteor(meteor_jvm._proc).compute_score(gts, res)
    scores["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    scores["CIDEr"] = Cider().compute_score(gts, res)[0]
    return scores, gts, res, per_caption


# --- the COCOEvalCap numbers -----------------------------------------------------------------------------------


@needs_java
def test_equals_the_cocoevalcap_pipeline(ours, coco_reference):
    scores, _ = ours
    reference = coco_reference[0]
    assert list(scores) == ALL_BUT_SPICE
    for metric in ALL_BUT_SPICE:
        assert scores[metric] == reference[metric], metric
        assert isinstance(scores[metric], float)
    assert 0.0 < scores["CIDEr"] < 10.0 and all(0.0 < scores[m] < 1.0 for m in ALL_BUT_SPICE if m != "CIDEr")


@needs_java
def test_pipelined_meteor_equals_line_by_line(meteor_jvm, coco_reference):
    _, gts, res, per_caption = coco_reference
    ids = list(gts)
    score, ours_per_caption = meteor_jvm.score([res[i][0] for i in ids], [gts[i] for i in ids])
    assert score == coco_reference[0]["METEOR"]
    assert ours_per_caption == list(per_caption)


@needs_java
def test_tokenization_equals_pycocoevalcap(coco_reference):
    _, gts, res, _ = coco_reference
    ids = list(REFERENCES)
    flat = [r for i in ids for r in REFERENCES[i]]
    tokens = captions.ptb_tokenize(flat + [PREDICTIONS[i] for i in ids])
    assert tokens[: len(flat)] == [r for i in ids for r in gts[i]]
    assert tokens[len(flat) :] == [res[i][0] for i in ids]
    assert res["img3"] == ["two dogs play with a frisbee -lrb- outside -rrb- fun"]  # pycocoevalcap's own quirk


@needs_java
def test_tokenizer_keeps_every_caption_on_its_line():
    texts = ["", "A dog.", "one\rtwo", "three\u2028four\x0cfive", "six\nseven", "", ""]
    assert captions.ptb_tokenize(texts) == ["", "a dog", "one two", "three four five", "six seven", "", ""]


@needs_java
def test_tokenizer_writes_nothing_into_site_packages():
    folder = captions.PTB_JAR.parent
    before = sorted(p.name for p in folder.iterdir())
    captions.ptb_tokenize(["A test caption."])
    assert sorted(p.name for p in folder.iterdir()) == before


@needs_java
def test_meteor_is_started_once_and_closed(ours):
    assert ours[1] == ["started", "closed"]


@needs_java
def test_a_failing_metric_kills_meteor_at_once(monkeypatch):
    started = []

    class Recording(captions.MeteorProcess):
        def __init__(self):
            super().__init__()
            started.append(self._proc)

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(captions, "MeteorProcess", Recording)
    monkeypatch.setattr(captions, "_python_metrics", broken)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="boom"):
        caption_scores({1: "a dog"}, {1: ["a dog runs"]}, metrics=["METEOR", "CIDEr"], tokenize=False)
    assert time.monotonic() - start < 8
    assert len(started) == 1 and started[0].poll() is not None


# --- METEOR's text protocol ------------------------------------------------------------------------------------


@needs_java
def test_meteor_survives_separators_and_newlines(meteor_jvm):
    hyps = ["two dogs ||| play", "a cat\non a mat", "", "a b"]
    refs = [["two dogs play"], ["a cat on a mat", "a ||| cat"], ["a plate"], ["a\nb", ""]]
    prepared = captions._prepare(hyps, refs, tokenize=False)
    score, per_caption = meteor_jvm.score(*prepared)
    assert len(per_caption) == 4 and 0.0 < score < 1.0
    clean_hyps = ["two dogs play", "a cat on a mat", "", "a b"]
    clean_refs = [["two dogs play"], ["a cat on a mat", "a cat"], ["a plate"], ["a b", ""]]
    assert per_caption == meteor_jvm.score(clean_hyps, clean_refs)[1]
    assert per_caption[0] == per_caption[1] == 1.0 and per_caption[2] == 0.0


def test_meteor_lines_have_one_field_per_reference():
    line = captions._meteor_score_line("a ||| b\nc", ["x|||y", "z\r\nw"])
    assert line == "SCORE ||| xy ||| z  w ||| a b c\n"
    assert line.count("|||") == 3 and line.count("\n") == 1


# --- BLEU: sacrebleu on the same tokens ------------------------------------------------------------------------


def _token_corpus(n=60, refs_per_item=3, seed=7):
    rng = random.Random(seed)
    vocab = "a the man woman dog cat on in with red big small runs sits park street table near".split()
    sentence = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))  # noqa: E731
    refs = {i: [sentence() for _ in range(refs_per_item)] for i in range(n)}
    hyps = {i: rng.choice(refs[i])[: rng.randint(5, 40)].strip() or "a" for i in range(n)}
    # Ties for the closest reference length: both pick the shorter one (lengths 4 and 6 around a 5-token hypothesis).
    refs[n] = ["a b c d", "a b c d e f", "x"]
    hyps[n] = "a b c d e"
    return hyps, refs


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_bleu_equals_sacrebleu(order):
    # Condition: the same number of references for every item (sacrebleu takes reference streams), tokens as given
    # (tokenize=False here, tokenize="none" there), no smoothing, "closest" reference length on both sides.
    hyps, refs = _token_corpus()
    ids = list(refs)
    ours = caption_scores(hyps, refs, metrics=[f"Bleu_{order}"], tokenize=False)[f"Bleu_{order}"]
    streams = [[refs[i][k] for i in ids] for k in range(3)]
    bleu = BLEU(tokenize="none", smooth_method="none", max_ngram_order=order)
    expected = bleu.corpus_score([hyps[i] for i in ids], streams).score
    assert 0 < expected < 100
    assert ours * 100 == pytest.approx(expected, abs=1e-9)


# --- CIDEr-D: the IDF comes from the whole set -----------------------------------------------------------------


def _cider(hyps, refs):
    return caption_scores(hyps, refs, metrics=["CIDEr"], tokenize=False)["CIDEr"]


def test_cider_by_hand():
    # Two items with no shared words: every n-gram has IDF log(2); a prediction equal to its single reference has
    # cosine 1 for n = 1..4 and no length penalty, so 10 * mean(1, 1, 1, 1) = 10.
    refs = {1: ["a man rides a horse"], 2: ["two dogs play frisbee outside"]}
    assert _cider({1: "a man rides a horse", 2: "two dogs play frisbee outside"}, refs) == pytest.approx(10.0)
    # Three-word captions have no 4-grams: 10 * mean(1, 1, 1, 0) = 7.5.
    assert _cider({1: "red big car", 2: "small green tree"}, {1: ["red big car"], 2: ["small green tree"]}) == (
        pytest.approx(7.5)
    )
    # Alone, an item's n-grams occur in every item's references: IDF log(1/1) = 0, so the same caption scores 0.
    assert _cider({1: "a man rides a horse"}, {1: refs[1]}) == 0.0


def test_cider_is_computed_once_over_the_whole_set():
    hyps, refs = _token_corpus(n=40)
    whole = _cider(hyps, refs)
    parts = (list(refs)[:20], list(refs)[20:])
    halves = [_cider({i: hyps[i] for i in part}, {i: refs[i] for i in part}) for part in parts]
    assert whole != pytest.approx(sum(halves) / 2, rel=1e-3)
    direct = Cider().compute_score(refs, {i: [hyps[i]] for i in refs})[0]
    assert whole == pytest.approx(direct, rel=1e-12)


def test_cider_prefers_the_right_caption():
    refs = {1: ["a man rides a horse on the beach", "a person on a horse"], 2: ["a cat on a sofa", "a sleeping cat"]}
    assert _cider({1: "a man rides a horse", 2: "a cat on a sofa"}, refs) > _cider(
        {1: "a cat on a sofa", 2: "a man rides a horse"}, refs
    )


# --- empty captions and raw tokens -----------------------------------------------------------------------------


def test_empty_captions_score_without_crashing():
    python_metrics = ["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"]
    scores = caption_scores({1: "", 2: ""}, {1: ["a dog"], 2: ["a cat", "a kitten"]}, python_metrics, tokenize=False)
    assert scores == {"Bleu_1": 0.0, "Bleu_4": 0.0, "ROUGE_L": 0.0, "CIDEr": 0.0}
    # No reference has a token: pycocoevalcap's CIDEr would crash on an empty IDF table; the score is 0.
    assert caption_scores({1: "a dog"}, {1: [""]}, ["CIDEr"], tokenize=False) == {"CIDEr": 0.0}


def test_untokenized_text_counts_case_and_punctuation():
    raw = caption_scores({1: "A Dog runs ."}, {1: ["a dog runs"]}, ["Bleu_1", "ROUGE_L"], tokenize=False)
    assert raw["Bleu_1"] == pytest.approx(1 / 4) and raw["ROUGE_L"] < 1.0
    spaced = caption_scores({1: " a\tdog \n runs "}, {1: ["a dog  runs"]}, ["Bleu_1", "ROUGE_L"], tokenize=False)
    assert spaced["Bleu_1"] == pytest.approx(1.0) and spaced["ROUGE_L"] == pytest.approx(1.0)


@needs_java
def test_tokenized_text_ignores_case_and_punctuation():
    scores = caption_scores({1: "A Dog runs ."}, {1: ["a dog runs"]}, ["Bleu_1", "ROUGE_L"])
    assert scores["Bleu_1"] == pytest.approx(1.0) and scores["ROUGE_L"] == pytest.approx(1.0)


# --- input checks ----------------------------------------------------------------------------------------------


def test_unknown_metrics_are_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown caption metric\(s\) \['BLEU'\]; valid names: Bleu_1, .*SPICE"):
        caption_scores({1: "a"}, {1: ["a"]}, metrics=["BLEU", "CIDEr"])
    with pytest.raises(ValueError, match="no caption metric requested"):
        caption_scores({1: "a"}, {1: ["a"]}, metrics=[])


def test_ids_must_match():
    with pytest.raises(ValueError, match=r"1 id\(s\) have references but no prediction: 'b'"):
        caption_scores({"a": "x"}, {"a": ["x"], "b": ["y"]}, ["CIDEr"])
    with pytest.raises(ValueError, match=r"have a prediction but no references: 3"):
        caption_scores({"a": "x", 3: "z"}, {"a": ["x"]}, ["CIDEr"])
    with pytest.raises(ValueError, match="no captions to score"):
        caption_scores({}, {}, ["CIDEr"])


def test_references_and_predictions_are_checked():
    with pytest.raises(ValueError, match=r"references\['a'\] is empty"):
        caption_scores({"a": "x"}, {"a": []}, ["CIDEr"])
    with pytest.raises(TypeError, match=r"references\['a'\] must be a list of strings, got str"):
        caption_scores({"a": "x"}, {"a": "x"}, ["CIDEr"])
    with pytest.raises(TypeError, match=r"predictions\['a'\] must be a string, got NoneType"):
        caption_scores({"a": None}, {"a": ["x"]}, ["CIDEr"])
