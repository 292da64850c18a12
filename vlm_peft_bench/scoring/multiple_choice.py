"""The one answer-extraction rule for lettered multiple-choice questions (rule id `mc-letter-v1`).

Given a model's free-text answer and the question's choices (lettered A, B, C, ...):

1. Strip surrounding whitespace. An empty answer has no letter.
2. A bare letter, in either case, optionally in parentheses and followed by `.`, `:` or `)`, is that letter:
   "B", "b.", "(b)", "C)" -> B, B, B, C. The letter must be one of the question's choices.
3. Otherwise, parenthesised capital letters that are choices, "(A)": exactly one distinct such letter is the
   answer; two or more distinct ones ("(A) or (B)") are ambiguous, so no answer.
4. Otherwise, capital letters that are choices and stand alone (not inside a word): exactly one distinct
   letter is the answer ("The answer is C" -> C); several ("A or B") are ambiguous, so no answer.
   Lower-case letters inside a sentence are never read as answers ("a circle" is an article).
5. Otherwise, the choice texts: an answer equal to one choice's text (case- and punctuation-insensitive),
   or containing exactly one choice's text as whole words, is that choice ("left" -> the letter of "left").
6. Anything else has no letter, and is scored as wrong.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

RULE_ID = "mc-letter-v1"
LETTERS = string.ascii_uppercase

_BARE = re.compile(r"^\(?\s*([A-Za-z])\s*\)?\s*[.:)]?$")
_PAREN = re.compile(r"\(([A-Z])\)")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])")
_PUNCT = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _single(letters: list[str]) -> str | None:
    distinct = set(letters)
    return distinct.pop() if len(distinct) == 1 else None


def extract_choice(response: str, choices: Sequence[str]) -> str | None:
    """The letter (A, B, ...) that `response` picks among `choices`, or None when it picks none or several."""
    valid = LETTERS[: len(choices)]
    text = (response or "").strip()
    if not text:
        return None
    bare = _BARE.match(text)
    if bare:
        letter = bare.group(1).upper()
        return letter if letter in valid else None
    for pattern in (_PAREN, _STANDALONE):
        found = [m for m in pattern.findall(text) if m in valid]
        if found:
            return _single(found)
    answer = _norm(text)
    normed = [_norm(c) for c in choices]
    exact = [LETTERS[i] for i, c in enumerate(normed) if c and c == answer]
    if exact:
        return _single(exact)
    padded = f" {answer} "
    contained = [LETTERS[i] for i, c in enumerate(normed) if c and f" {c} " in padded]
    return _single(contained)
