"""lmms-eval hooks for our VQAv2 tasks: fixed prompt, image, official per-question accuracy, breakdowns."""

from __future__ import annotations

from vlm_peft_bench.lmms.caption_vqa_metrics import VQA_ANSWER_TYPES, vqa_record, vqa_type_aggregation
from vlm_peft_bench.lmms.dataset_task import DatasetTask  # noqa: F401  (named by the YAMLs' `class:`)

# The instruction after the question (also in the template's lmms_eval_specific_kwargs, so that results files
# record it): LLaVA's short-answer convention, as lmms-eval's own vqav2_val uses.
POST_PROMPT = "\nAnswer the question using a single word or phrase."


def doc_to_visual(doc: dict) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return kwargs.get("pre_prompt", "") + doc["question"] + kwargs.get("post_prompt", POST_PROMPT)


def doc_to_target(doc: dict) -> str:
    return doc["multiple_choice_answer"]


def process_results(doc: dict, results: list[str]) -> dict:
    """`vqa_accuracy`: the item's official accuracy (averaged by lmms-eval's `mean`); the per-answer-type
    metrics get the whole record (question id, answer type, raw response, prediction, accuracy)."""
    record = vqa_record(doc, results)
    return {"vqa_accuracy": record["accuracy"], **{metric: record for metric in VQA_ANSWER_TYPES.values()}}


aggregate_yes_no = vqa_type_aggregation("yes/no")
aggregate_number = vqa_type_aggregation("number")
aggregate_other = vqa_type_aggregation("other")
