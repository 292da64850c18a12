"""Smoke test of `benchmarks/run.py` in its quickest mode: it runs and its JSON carries every ratio.

No timing thresholds here: timings belong in the benchmark's own report, never in pass/fail tests.
"""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

RATIOS = {"vlreft_vs_llava_hf", "reft_overhead", "lora_merged_vs_bare", "lora_unmerged_vs_bare",
          "lora_merged_vs_unmerged", "batch8_vs_batch1"}
CONFIGS = {"vlreft_bs1", "llava_hf_bs1", "reft_bs1", "lora_unmerged_bs1", "lora_merged_bs1", "vlreft_bs8"}


@pytest.mark.slow
def test_quick_benchmark_writes_every_ratio(tmp_path):
    out = tmp_path / "run.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data["ratios"]) == RATIOS
    for ratio in data["ratios"].values():
        assert ratio["ratio"] > 0 and ratio["ratio_cpu_time"] > 0
        assert ratio["met"] in (True, False, None)
    assert set(data["configs"]) == CONFIGS
    for config in data["configs"].values():
        assert config["samples_per_s"] > 0 and len(config["runs_s"]) == data["settings"]["repeats"]
    captions = data["caption_scoring"]
    assert "error" not in captions, captions.get("error")
    assert captions["ratio_all_to_meteor"] > 0
    # same checkpoint, same prompt, same image preprocessing: greedy answers agree (a correctness check, not timing)
    assert data["greedy_identical"]["vlreft_vs_llava_hf"]["mismatches"] == 0
    assert data["greedy_identical"]["vlreft_bs8_vs_bs1"]["mismatches"] == 0
    for line in ("throughput vlreft / llava_hf", "time ReFT / bare", "time merged LoRA / bare",
                 "throughput batch 8 / batch 1", "all but SPICE / METEOR alone", "vqa_v2_mini, 300 questions, batch 8",
                 "cvbench_mini_mc (4-option documents)"):
        assert line in proc.stdout
    sharing = data["sharing"]  # shared image prefixes and contexts against the unshared path, identical answers
    for batch in ("1", "8"):
        vqa = sharing["vqa"]["by_batch_size"][batch]
        assert vqa["mismatches"] == [] and vqa["ratio"] > 0 and vqa["met"] in (True, False)
        profile = vqa["profile"]
        assert profile["questions_per_image"] == 3 and 1 <= profile["bound"] <= 3
    assert sharing["mc4"]["greedy_flags_identical"] and sharing["mc4"]["largest_loglikelihood_difference"] < 1e-4
