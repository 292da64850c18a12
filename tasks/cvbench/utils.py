"""lmms-eval hooks for our CV-Bench tasks: prompt, image, per-item result and official aggregation."""

from __future__ import annotations

from vlm_peft_bench.lmms.dataset_task import DatasetTask  # noqa: F401  (named by the YAMLs' `class:`)
from vlm_peft_bench.scoring.cvbench import cvbench_scores
from vlm_peft_bench.scoring.multiple_choice import RULE_ID, extract_choice

POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
METRICS = (
    "cvbench_combined", "cvbench_2d", "cvbench_3d", "accuracy",
    "source_ade20k", "source_coco", "source_omni3d",
    "task_count", "task_relation", "task_depth", "task_distance",
)


def doc_to_visual(doc: dict) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return kwargs.get("pre_prompt", "") + doc["prompt"] + kwargs.get("post_prompt", POST_PROMPT)


def doc_to_target(doc: dict) -> str:
    """The letter alone ("B" for "(B)"): what the prompt asks for, and what training teaches."""
    return doc["answer"].strip().strip("()")


def process_results(doc: dict, results: list[str]) -> dict:
    response = results[0] if results else ""
    letter = extract_choice(response, doc["choices"])
    record = {
        "idx": doc["idx"], "source": doc["source"], "task": doc["task"], "type": doc["type"],
        "answer": doc["answer"], "response": response, "parsed": letter, "rule": RULE_ID,
        "correct": letter is not None and f"({letter})" == doc["answer"].strip(),
    }
    return {metric: record for metric in METRICS}


def _score(name: str):
    def aggregate(records: list[dict]) -> float:
        return cvbench_scores(records)[name]

    aggregate.__name__ = f"aggregate_{name}"
    return aggregate


aggregate_combined = _score("combined")
aggregate_2d = _score("2d")
aggregate_3d = _score("3d")
aggregate_accuracy = _score("accuracy")
aggregate_source_ade20k = _score("source_ade20k")
aggregate_source_coco = _score("source_coco")
aggregate_source_omni3d = _score("source_omni3d")
aggregate_task_count = _score("task_count")
aggregate_task_relation = _score("task_relation")
aggregate_task_depth = _score("task_depth")
aggregate_task_distance = _score("task_distance")
