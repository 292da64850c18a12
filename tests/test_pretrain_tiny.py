"""The tiny base's pre-training data and script (a few CPU steps; the real run used a GPU)."""

import json
import random
import re
import subprocess
import sys

import pytest

from vlm_peft_bench.nanollava.loading import TINY_DIR, load_nanollava
from vlm_peft_bench_build.synthetic.cvbench_scenes import (
    COUNT_TEMPLATE,
    DEPTH_TEMPLATE,
    DISTANCE_TEMPLATE,
    RELATION_TEMPLATE,
)
from vlm_peft_bench_build.synthetic.pretrain_scenes import multiple_choice, scene_examples

from .conftest import REPO


def test_pretraining_questions_are_not_cvbench_questions():
    rng = random.Random(0)
    questions = {q for _ in range(300) for q, _ in scene_examples(rng)[1]}
    for template in (COUNT_TEMPLATE, RELATION_TEMPLATE, DEPTH_TEMPLATE, DISTANCE_TEMPLATE):
        pattern = re.compile(".+".join(re.escape(part) for part in re.split(r"\{\w+\}", template)))
        assert not any(pattern.fullmatch(q) for q in questions), template
    assert not any("Select from the following choices" in q for q in questions)


def test_answers_are_words_not_letters():
    rng = random.Random(1)
    answers = {a for _ in range(300) for _, a in scene_examples(rng)[1]}
    assert not any(a.strip("()") in "ABCD" for a in answers)
    assert {"yes", "no", "0", "1", "left", "right"} <= answers


def test_multiple_choice_only_for_other_kinds_with_the_right_option_lettered():
    rng, mc_rng = random.Random(2), random.Random(3)
    letters = []
    for _ in range(300):
        qa = scene_examples(rng)[1]
        open_answers = dict(qa)
        for prompt, letter in multiple_choice(mc_rng, qa):
            question, *options = prompt.split("\n")[:-1]
            question = question.removesuffix(" Select from the following choices.")
            assert question.startswith(("What colour is", "What shape is", "What is inside")), question
            right = open_answers[question].removeprefix("the ")
            assert options[ord(letter) - ord("A")] == f"({letter}) {right}"
            assert len(options) == len(set(options)) and 2 <= len(options) <= 4
            letters.append((letter, len(options)))
    for n in (2, 3, 4):  # the right option's position is uniform for each number of options
        seen = [ord(letter) - ord("A") for letter, k in letters if k == n]
        assert len(seen) > 100 and all(abs(seen.count(i) / len(seen) - 1 / n) < 0.1 for i in range(n))


@pytest.mark.slow
def test_script_runs_and_writes_a_loadable_model(tmp_path):
    out = tmp_path / "pt"
    cmd = [sys.executable, "-m", "vlm_peft_bench_build.pretrain_tiny", "--device", "cpu", "--steps", "3",
           "--scenes", "40", "--heldout-scenes", "5", "--batch-size", "4", "--workers", "1", "--warmup", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)  # a checkout's package
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "pretrain.json").read_text())
    assert report["steps_done"] == 3 and "cvbench_mini_zero_shot" in report
    assert load_nanollava(str(out)).layout == "native"


def test_committed_base_records_its_pretraining():
    report = json.loads((TINY_DIR / "pretrain.json").read_text())
    assert report["steps_done"] == 8305 and report["final_heldout"]["all"] > 0.8


def test_committed_tokenizer_is_the_one_its_corpus_trains():
    from vlm_peft_bench_build.tiny import tokenizer_corpus, train_tokenizer

    new = json.loads(train_tokenizer(tokenizer_corpus()).backend_tokenizer.to_str())["model"]
    old = json.loads((TINY_DIR / "tokenizer.json").read_text())["model"]
    assert new["vocab"] == old["vocab"] and new["merges"] == old["merges"]
