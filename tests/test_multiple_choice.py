import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlm_peft_bench.scoring.multiple_choice import extract_choice

FOUR = ["3", "2", "1", "0"]
TWO = ["left", "right"]


@pytest.mark.parametrize(
    ("response", "choices", "expected"),
    [
        ("(B)", FOUR, "B"),
        ("b.", FOUR, "B"),
        ("The answer is C", FOUR, "C"),
        ("", FOUR, None),
        ("   ", FOUR, None),
        ("A or B", FOUR, None),
        ("(A) or (B)", FOUR, None),
        ("B) 2", FOUR, "B"),
        ("c", FOUR, "C"),
        ("(d)", FOUR, "D"),
        ("E", FOUR, None),  # not one of the four choices
        ("(C)", TWO, None),  # only A and B exist
        ("It is a circle", TWO, None),  # a lower-case article is not an answer
        ("right", TWO, "B"),
        ("Right.", TWO, "B"),
        ("The object is on the left", TWO, "A"),
        ("left or right", TWO, None),
        ("The answer is (A) left", TWO, "A"),
        ("A. left", TWO, "A"),
    ],
)
def test_awkward_outputs(response, choices, expected):
    assert extract_choice(response, choices) == expected


@given(st.text(max_size=60), st.integers(min_value=2, max_value=6))
def test_result_is_always_a_valid_letter_or_none(response, n):
    choices = [f"choice {i}" for i in range(n)]
    letter = extract_choice(response, choices)
    assert letter is None or letter in "ABCDEF"[:n]


@given(st.sampled_from("ABCD"), st.sampled_from(["{}", "({})", "{}.", " {} ", "The answer is {}", "({}) x"]))
def test_any_clean_rendering_of_one_letter_is_read(letter, template):
    assert extract_choice(template.format(letter), FOUR) == letter
