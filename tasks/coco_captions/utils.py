"""lmms-eval hooks for our COCO Captions tasks: fixed prompt, image, per-item record, whole-split scores."""

from __future__ import annotations

from vlm_peft_bench.lmms.caption_vqa_metrics import CAPTION_METRICS, caption_aggregation, caption_record
from vlm_peft_bench.lmms.dataset_task import DatasetTask  # noqa: F401  (named by the YAMLs' `class:`)

# The prompt (also in the template's lmms_eval_specific_kwargs, so that results files record it): the one
# lmms-eval's own coco2017_cap_val uses.
CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."


def doc_to_visual(doc: dict) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return kwargs.get("pre_prompt", "") + kwargs.get("prompt", CAPTION_PROMPT) + kwargs.get("post_prompt", "")


def doc_to_target(doc: dict) -> list[str]:
    return list(doc["answer"])


def process_results(doc: dict, results: list[str]) -> dict:
    """One record per item (id, raw response, prediction, references), under every caption metric."""
    record = caption_record(doc, results)
    return {metric: record for metric in CAPTION_METRICS}


aggregate_bleu_1 = caption_aggregation("Bleu_1")
aggregate_bleu_2 = caption_aggregation("Bleu_2")
aggregate_bleu_3 = caption_aggregation("Bleu_3")
aggregate_bleu_4 = caption_aggregation("Bleu_4")
aggregate_meteor = caption_aggregation("METEOR")
aggregate_rouge_l = caption_aggregation("ROUGE_L")
aggregate_cider = caption_aggregation("CIDEr")
aggregate_spice = caption_aggregation("SPICE")
