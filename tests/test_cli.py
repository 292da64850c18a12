"""End to end through the command lines users type (subprocesses, embedded tiny model, bundled data)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, two_process_command

BIN = Path(sys.executable).parent
RUN = ["--model", "vlreft", "--model_args", "pretrained=nanollava-tiny", "--tasks", "cvbench_mini", "--batch_size", "4"]


def run(cmd, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def check_outputs(out: Path, provenance: bool):
    [results] = list(out.glob("nanollava-tiny/*_results.json"))
    data = json.loads(results.read_text())
    if provenance:  # our `lmms_eval` adds versions, the prompt template and model hashes
        block = data["vlm_peft_bench"]
        assert block["prompt_template"].startswith("<|im_start|>user\n<image>\n{prompt}")
        assert len(block["model_files_sha256"]["model.safetensors"]) == 64
        assert block["versions"]["transformers"]
        assert block["params"] == {"trainable": 0, "total": 1_926_912, "fraction": 0.0}  # the tiny base's
        assert block["share_context"] is True  # the default
    scores = data["results"]["cvbench_mini"]
    for metric in ("cvbench_combined", "cvbench_2d", "cvbench_3d", "accuracy", "task_count"):
        assert 0.0 <= scores[f"{metric},none"] <= 1.0
    assert data["config"]["model"] == "vlreft"
    [samples] = list(out.glob("nanollava-tiny/*_samples_cvbench_mini.jsonl"))
    lines = samples.read_text().splitlines()
    assert len(lines) == 800
    record = json.loads(lines[0])["cvbench_combined"]
    assert {"parsed", "response", "correct", "rule"} <= set(record)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["lmms_eval", "python -m lmms_eval --include_path"])
def test_full_run_writes_results_and_samples(tmp_path, entry):
    if entry == "lmms_eval":
        cmd = [str(BIN / "lmms_eval"), *RUN]
    else:
        cmd = [sys.executable, "-m", "lmms_eval", *RUN, "--include_path", str(REPO / "tasks")]
    proc = run([*cmd, "--output_path", str(tmp_path / "out"), "--log_samples"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_outputs(tmp_path / "out", provenance=entry == "lmms_eval")


@pytest.mark.slow
def test_unknown_task_is_reported_with_suggestions(tmp_path):
    proc = run([str(BIN / "lmms_eval"), "--model", "vlreft", "--tasks", "cvbench_mnii"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "unknown task(s)" in proc.stderr and "did you mean: cvbench_mini" in proc.stderr


def responses(out: Path) -> dict:
    [samples] = list(out.glob("nanollava-tiny/*_samples_cvbench_mini.jsonl"))
    return {json.loads(line)["doc_id"]: json.loads(line)["filtered_resps"] for line in samples.read_text().splitlines()}


@pytest.mark.slow
def test_data_parallel_over_two_processes_matches_one(tmp_path):
    """Two CPU processes (torchrun) shard the requests; the gathered answers equal one process's."""
    limit = ["--limit", "24", "--log_samples", "--include_path", str(REPO / "tasks")]
    single = run([sys.executable, "-m", "lmms_eval", *RUN, *limit, "--output_path", str(tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    answers = tmp_path / "answers"
    with_log = [*RUN[:3], f"{RUN[3]},answer_log={answers}", *RUN[4:]]
    lmms = ["-m", "vlm_peft_bench.lmms.cli", *with_log, *limit]  # our lmms_eval: its block, on rank 0 only
    parallel = run(two_process_command(*lmms, "--output_path", str(tmp_path / "two")), tmp_path)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "vlreft: data parallel over 2 processes" in parallel.stdout + parallel.stderr
    [results] = list((tmp_path / "two").glob("nanollava-tiny/*_results.json"))
    assert json.loads(results.read_text())["vlm_peft_bench"]["schema_version"] == 1
    one, two = responses(tmp_path / "one"), responses(tmp_path / "two")
    assert len(two) == 24 and one == two
    # Each process logged its own shard of the answers; a second launch reads every one back and computes none.
    shards = sorted(answers.glob("answers-*-rank*.jsonl"))
    assert [f.name[-12:] for f in shards] == ["-rank0.jsonl", "-rank1.jsonl"]
    assert sum(len(f.read_text().splitlines()) - 1 for f in shards) == 24
    again = run(two_process_command(*lmms, "--output_path", str(tmp_path / "three")), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("computing the other 0") == 2
    assert responses(tmp_path / "three") == one
    assert sum(len(f.read_text().splitlines()) - 1 for f in shards) == 24
