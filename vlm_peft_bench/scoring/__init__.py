"""Scorers: multiple-choice answer extraction and CV-Bench's official aggregation."""

from vlm_peft_bench.scoring.cvbench import cvbench_scores
from vlm_peft_bench.scoring.multiple_choice import RULE_ID, extract_choice

__all__ = ["RULE_ID", "cvbench_scores", "extract_choice"]
