"""Two runs of `lmms_eval` with the same seed give identical predictions and identical scores.

Sampling is on (temperature 1), so the seed matters, and the zoo's LoRA adapter is attached. That the runs really
sample (a dropped `do_sample` would make them agree trivially) is checked against the adapter's greedy answers
recorded in adapters_zoo/answers/.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

BIN = Path(sys.executable).parent
LORA = REPO / "adapters_zoo" / "weights" / "lora-r8__nanollava-tiny__cvbench_mini"
GREEDY = REPO / "adapters_zoo" / "answers" / "lora-r8__nanollava-tiny__cvbench_mini.json"  # by doc_id, whole split


def evaluate(out: Path, seed: str) -> tuple[dict, dict]:
    cmd = [str(BIN / "lmms_eval"), "--model", "vlreft", "--model_args", f"pretrained=nanollava-tiny,adapter={LORA}",
           "--tasks", "cvbench_mini", "--batch_size", "4", "--limit", "24", "--seed", seed,
           "--gen_kwargs", "temperature=1.0,do_sample=True", "--log_samples", "--output_path", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [results] = list(out.glob("**/*_results.json"))
    [samples] = list(out.glob("**/*_samples_cvbench_mini.jsonl"))
    responses = {}
    for line in samples.read_text().splitlines():
        record = json.loads(line)
        responses[record["doc_id"]] = (record["filtered_resps"], record["cvbench_combined"])
    return responses, json.loads(results.read_text())["results"]["cvbench_mini"]


@pytest.mark.slow
def test_same_seed_same_predictions_and_scores(tmp_path):
    first, first_scores = evaluate(tmp_path / "a", "42")
    second, second_scores = evaluate(tmp_path / "b", "42")
    assert len(first) == 24
    assert first == second
    assert first_scores == second_scores
    # Greedy answers agree across stacks up to ~1% near-ties (test_zoo), so a run that fell back to greedy differs
    # from them on 0 or 1 of these 24 items; at temperature 1 this adapter's sampled letters differ on 13 (seed 42,
    # transformers 4.45).
    greedy = json.loads(GREEDY.read_text())["answers"]
    differing = [d for d, (resps, _) in first.items() if resps[0] != greedy[d]]
    assert len(differing) >= 6, f"the sampled answers equal the greedy ones except on docs {differing}"
