"""VQAv2 accuracy with the semantics of the official evaluation (GT-Vision-Lab/VQA, vqaEval.py).

Which official variant: the current GT-Vision-Lab/VQA master of `PythonEvaluationTools/vqaEvaluation/vqaEval.py`
(the one EvalAI-era papers report). Its `evaluate()` does, per question:

1. replace "\\n" and "\\t" by " " and strip, in the prediction and in every human answer;
2. only when the (cleaned) human answers are not all identical (`if len(set(gtAnswers)) > 1:`), apply
   `processPunctuation` then `processDigitArticle` to every human answer *and* to the prediction;
3. for each human answer, leave it out (the answers are dicts with distinct `answer_id`s, so this is by index,
   not by value) and score `min(1, #other answers equal to the prediction / 3)`; average those.

So when all humans wrote the same string nothing is normalized and the comparison is case- and
punctuation-sensitive ("Yes" against ten "yes" scores 0). Older revisions of the same file normalized the
prediction always and the answers with `processPunctuation` only, and had a different punctuation list; we follow
the current one. lmms-eval's VQAv2 scorer differs again (always normalizes, leaves out by value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlm_peft_bench.scoring.ids import check_same_ids

# The official tables, entry for entry (including their quirks: capitalised keys such as "Im" can never match
# after lower-casing, and "somebody'd" maps to "somebodyd").
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

# Same patterns as the official ones. "(?!<=\d)" is a look-ahead (the author meant a look-behind), so it never
# blocks anything: every period not followed by a digit goes ("3.5" keeps its period, "end." loses it).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The official call is `periodStrip.sub("", outText, re.UNICODE)`: the flag lands in the positional `count`
# argument, so at most int(re.UNICODE) == 32 periods are removed. We keep that limit on purpose.
_PERIOD_STRIP_COUNT = int(re.UNICODE)


def process_punctuation(text: str) -> str:
    """The official `processPunctuation`.

    Each punctuation mark is deleted where it touches a space (or anywhere, once the text holds a digit-comma-digit
    such as "1,000"), and replaced by a space otherwise. The tests look at the *input* text, as the official does.
    """
    out = text
    has_number_comma = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or has_number_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, number words to digits, drop articles, restore contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """`process_punctuation` then `process_digit_article`, as applied when the human answers disagree."""
    return process_digit_article(process_punctuation(text))


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _check_answers(answers: Any) -> list[str]:
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise TypeError(f"answers must be a list of strings, got {type(answers).__name__}")
    if len(answers) == 0:
        raise ValueError("answers is empty: VQA accuracy needs at least one human answer")
    bad = [a for a in answers if not isinstance(a, str)]
    if bad:
        raise TypeError(f"every answer must be a string, got {type(bad[0]).__name__}: {bad[0]!r}")
    return list(answers)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy (0..1) of one predicted answer against the human answers (ten in VQAv2).

    The mean, over leaving out each human answer in turn (by position), of min(1, matches among the others / 3).
    With ten answers: 1 match gives 0.3, 2 give 0.6, 3 give 0.9, 4 or more give 1.0. Any count >= 1 uses the same
    formula, so fewer than four answers cap the score: a single answer always scores 0 (no other answer is left to
    match), two answers at most 1/3, three at most 2/3.
    """
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string, got {type(prediction).__name__}")
    human = [_clean(a) for a in _check_answers(answers)]
    predicted = _clean(prediction)
    if len(set(human)) > 1:
        human = [normalize_answer(a) for a in human]
        predicted = normalize_answer(predicted)
    matches = [a == predicted for a in human]
    total = sum(matches)
    per_left_out = [min(1, (total - left_out) / 3) for left_out in matches]
    return float(sum(per_left_out)) / len(per_left_out)


def vqa_corpus_accuracy(predictions: Mapping[Any, str], answers: Mapping[Any, Sequence[str]]) -> float:
    """Mean `vqa_accuracy` over question ids, as a fraction 0..1.

    The official script reports `round(100 * mean, 2)`; we return the unrounded fraction (multiply by 100 for the
    official figure). Both mappings must hold the same question ids.
    """
    check_same_ids(predictions, answers, "question id", "answers")
    if not answers:
        raise ValueError("no questions to score")
    scores = [vqa_accuracy(predictions[q], answers[q]) for q in answers]
    return sum(scores) / len(scores)

