"""Scorers: multiple-choice answer extraction, CV-Bench's official aggregation, VQAv2 accuracy, COCO caption metrics;
and the repr-rank spectrum's maths (`spectrum.py`). Pure functions: this package imports only the plain utilities."""

from vlm_peft_bench.scoring.captions import CAPTION_METRICS, CaptionReport, caption_report, caption_scores, spice_status
from vlm_peft_bench.scoring.cvbench import cvbench_scores
from vlm_peft_bench.scoring.multiple_choice import RULE_ID, extract_choice
from vlm_peft_bench.scoring.vqa import vqa_accuracy, vqa_corpus_accuracy

__all__ = [
    "CAPTION_METRICS",
    "CaptionReport",
    "RULE_ID",
    "caption_report",
    "caption_scores",
    "cvbench_scores",
    "extract_choice",
    "spice_status",
    "vqa_accuracy",
    "vqa_corpus_accuracy",
]
