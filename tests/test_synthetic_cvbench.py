import collections

import numpy as np

from vlm_peft_bench_build.synthetic.cvbench_scenes import LETTERS, format_prompt, generate_split
from vlm_peft_bench_build.synthetic.write_cvbench_mini import CVBENCH_FEATURES

CVBENCH_COLUMNS = {
    "idx", "type", "task", "image", "question", "choices", "answer", "prompt", "filename", "source",
    "source_dataset", "source_filename", "target_class", "target_size", "bbox",
}


def test_bundled_split_has_cvbench_schema_and_size(mini_test):
    assert set(mini_test.column_names) == CVBENCH_COLUMNS
    assert mini_test.features == CVBENCH_FEATURES
    assert len(mini_test) >= 300
    tasks = collections.Counter(mini_test["task"])
    assert set(tasks) == {"Count", "Relation", "Depth", "Distance"}
    sources = collections.Counter(mini_test["source"])
    assert set(sources) == {"ADE20K", "COCO", "Omni3D"}
    for row in mini_test.select(range(0, len(mini_test), 37)):
        assert row["answer"] in [f"({LETTERS[i]})" for i in range(len(row["choices"]))]
        assert row["prompt"] == format_prompt(row["question"], row["choices"])
        assert (row["type"] == "3D") == (row["source"] == "Omni3D")


def test_bundled_data_is_what_the_generator_makes(mini_test):
    fresh = generate_split("test")
    assert len(fresh) == len(mini_test)
    for i in (0, 1, 150, 200, len(fresh) - 1):
        stored = mini_test[i]
        for key in ("question", "choices", "answer", "task", "source", "target_class"):
            assert stored[key] == fresh[i][key]
        assert np.array_equal(np.asarray(stored["image"].convert("RGB")), np.asarray(fresh[i]["image"]))


def test_train_and_test_differ_and_answers_are_not_one_letter():
    train, test = generate_split("train"), generate_split("test")
    assert {t["prompt"] for t in train[:50]} != {t["prompt"] for t in test[:50]}
    answers = collections.Counter(t["answer"] for t in test)
    assert max(answers.values()) < 0.6 * len(test)
