"""Scoring an adapter for its zoo card: the test split through lmms-eval's own evaluator, with a 95% interval, and
the greedy answers by doc_id that `adapters_zoo/answers/` keeps (tests/test_zoo.py re-derives every claim from
them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.paths import display_path, tasks_dir
from vlm_peft_bench.train.data import load_task


@dataclass
class Evaluation:
    summary: dict  # what a card records under `test` / `base_test`
    answers: list[str]  # the filtered answer of every test item, in doc_id order
    versions: dict[str, str]  # transformers, peft, torch: the stack the answers come from


def evaluate_with_lmms(task_name: str, base: str, adapter: Path | None, seed: int,
                       bootstrap: int = 1000) -> Evaluation:
    """Score on the test split through lmms-eval's evaluator (as `lmms_eval --model vlreft` does), with a 95% CI."""
    import peft
    import torch
    import transformers
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    model_args = f"pretrained={base}" + (f",adapter={display_path(adapter)}" if adapter else "")
    results = simple_evaluate(model="vlreft", model_args=model_args, tasks=[task_name], batch_size=8,
                              log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                              task_manager=TaskManager("ERROR", include_path=[str(tasks_dir())]))
    scores = {k.split(",")[0]: float(v) for k, v in results["results"][task_name].items()
              if k.endswith(",none") and "stderr" not in k and isinstance(v, (int, float))}
    task = load_task(task_name)
    headline = task.config.metric_list[0]["metric"]
    aggregate = task.aggregation()[headline]
    samples = sorted(results["samples"][task_name], key=lambda s: s["doc_id"])
    records = [s[headline] for s in samples]
    rng = np.random.default_rng(seed)
    draws = [aggregate([records[i] for i in rng.integers(0, len(records), len(records))]) for _ in range(bootstrap)]
    low, high = np.percentile(draws, [2.5, 97.5])
    parsed = [r.get("parsed") for r in records if isinstance(r, dict) and "parsed" in r]
    answers = {str(k): parsed.count(k) for k in sorted(set(parsed), key=str)} if parsed else None
    summary = {"metric": headline, "value": round(scores[headline], 4),
               "ci95": [round(float(low), 4), round(float(high), 4)], "n": len(records),
               "scores": {k: round(v, 4) for k, v in scores.items()}, "answers_given": answers,
               "command": f"lmms_eval --model vlreft --model_args {model_args} --tasks {task_name} --batch_size 8"}
    given = [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"]
             for s in samples]
    versions = {"transformers": transformers.__version__, "peft": peft.__version__,
                "torch": torch.__version__.split("+")[0]}  # without a local build tag (+cu130), as cards record it
    return Evaluation(summary, [str(a) for a in given], versions)


def write_answers(answers_dir: Path, name: str, evaluation: Evaluation) -> Path:
    """`answers_dir/<name>.json`: the command (with --log_samples), the stack and the answers by doc_id."""
    record = {"command": evaluation.summary["command"] + " --log_samples", "versions": evaluation.versions,
              "answers": evaluation.answers}
    write_files(answers_dir, {f"{name}.json": (json.dumps(record, indent=0) + "\n").encode()})
    return answers_dir / f"{name}.json"
