"""A real `lmms_eval` run, killed midway and started again with the same output path, loses no finished answer,
recomputes none, and ends with exactly the predictions and scores of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
LIMIT = 120


def command(out: Path, *extra: str) -> list[str]:
    return [str(BIN / "lmms_eval"), "--model", "vlreft", "--model_args", "pretrained=nanollava-tiny",
            "--tasks", "cvbench_mini", "--batch_size", "1", "--limit", str(LIMIT), "--log_samples",
            "--output_path", str(out), *extra]


ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")


def answer_lines(out: Path) -> list[str]:
    files = list((out / "vlreft_answers").glob("answers-*-rank0.jsonl"))
    return files[0].read_text().split("\n")[1:] if files else []


def predictions(out: Path) -> dict:
    [samples] = list(out.glob("**/*_samples_cvbench_mini.jsonl"))
    return {r["doc_id"]: (r["filtered_resps"], r["cvbench_combined"])
            for r in map(json.loads, samples.read_text().splitlines())}


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_recomputing_answers(tmp_path):
    out = tmp_path / "out"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command(out), cwd=tmp_path, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 300
    while len([line for line in answer_lines(out) if line.endswith("}")]) < 20:
        assert first.poll() is None, "ended before the kill: " + (tmp_path / "first.log").read_text()[-2000:]
        assert time.time() < deadline, "no answers logged within 5 minutes"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    assert first.returncode == -signal.SIGKILL
    assert not list(out.glob("**/*_results.json")), "the killed run should not have finished"
    finished = [line for line in answer_lines(out) if line.strip()]
    complete = [line for line in finished if line.endswith("}")]
    assert 20 <= len(complete) < LIMIT

    second = subprocess.run(command(out), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    n_read = len({json.loads(line)["key"] for line in complete})
    assert f"resuming: {n_read} of {LIMIT} generation answers read" in second.stdout + second.stderr
    lines = [line for line in answer_lines(out) if line.strip()]
    assert lines[:len(complete)] == complete, "finished answers were rewritten or lost"
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == LIMIT == len(set(keys)), "an answer was computed twice"
    resumed = predictions(out)

    fresh = tmp_path / "fresh"
    third = subprocess.run(command(fresh, "--no_resume"), cwd=tmp_path, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert not (fresh / "vlreft_answers").exists()
    assert predictions(fresh) == resumed
    assert len(resumed) == LIMIT
