"""lmms-eval hooks for our CV-Bench tasks: task class, prompt, image, per-item result and official aggregation.

The metric names and the prompt suffix are written once, in `vlm_peft_bench.scoring.cvbench`: `CVBenchTask` fills
each task's `metric_list` and prompt kwargs from there, so the YAMLs name neither.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from vlm_peft_bench.lmms.dataset_task import DatasetTask
from vlm_peft_bench.scoring.cvbench import METRICS, PARTS, POST_PROMPT, cvbench_scores, metrics_for
from vlm_peft_bench.scoring.multiple_choice import LETTERS, RULE_ID, extract_choice

# cvbench_mini_mc's rule: the option whose letter has the highest log-likelihood (the first on a tie).
MC_RULE_ID = "mc-loglikelihood-v1"


def _score(name: str) -> Callable[[list[dict]], float]:
    def aggregate(records: list[dict]) -> float:
        return cvbench_scores(records)[name]

    aggregate.__name__ = f"aggregate_{name}"
    return aggregate


AGGREGATIONS: dict[str, Callable[[list[dict]], float]] = {m.name: _score(m.score) for m in METRICS}


def metric_list(parts: list[str] | tuple[str, ...] = tuple(PARTS)) -> list[dict]:
    """lmms-eval's `metric_list` for a task over these CV-Bench parts (a fresh list: lmms-eval keeps it)."""
    return [{"metric": m.name, "aggregation": AGGREGATIONS[m.name], "higher_is_better": True}
            for m in metrics_for(parts)]


class CVBenchTask(DatasetTask):
    """`DatasetTask` with CV-Bench's metrics and prompt suffix. The YAML's `metadata.parts` (default: 2D and 3D)
    chooses the metrics; a YAML that writes its own `metric_list` or `lmms_eval_specific_kwargs` keeps them."""

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = dict(config or {})
        parts: object = tuple(PARTS)
        if isinstance(config.get("metadata"), dict) and "parts" in config["metadata"]:
            # consumed here, so the results' config records the metric list it chose, not the key
            parts = config["metadata"]["parts"]
            config["metadata"] = {k: v for k, v in config["metadata"].items() if k != "parts"}
        try:
            metrics = metric_list([parts] if isinstance(parts, str) else parts)
        except (TypeError, ValueError) as err:
            raise ValueError(f"task {config.get('task')}: metadata.parts: {err}") from err
        config.setdefault("metric_list", metrics)
        config.setdefault("lmms_eval_specific_kwargs", {"default": {"pre_prompt": "", "post_prompt": POST_PROMPT}})
        super().__init__(config=config, **kwargs)


def doc_to_visual(doc: dict) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return kwargs.get("pre_prompt", "") + doc["prompt"] + kwargs.get("post_prompt", POST_PROMPT)


def doc_to_target(doc: dict) -> str:
    """The letter alone ("B" for "(B)"): what the prompt asks for, and what training teaches."""
    return doc["answer"].strip().strip("()")


def _records(doc: dict, response: str, letter: str | None, rule: str, **extra) -> dict:
    record = {
        "idx": doc["idx"], "source": doc["source"], "task": doc["task"], "type": doc["type"],
        "answer": doc["answer"], "response": response, "parsed": letter, "rule": rule, **extra,
        "correct": letter is not None and f"({letter})" == doc["answer"].strip(),
    }
    return {m.name: record for m in METRICS}


def process_results(doc: dict, results: list[str]) -> dict:
    response = results[0] if results else ""
    return _records(doc, response, extract_choice(response, doc["choices"]), RULE_ID)


def doc_to_choice(doc: dict) -> list[str]:
    """The option letters of the question ("A", "B", ...): the continuations cvbench_mini_mc scores."""
    return list(LETTERS[:len(doc["choices"])])


def _loglikelihood(result) -> float:
    """The log-likelihood of one (log-likelihood, is greedy) pair. lmms-eval 0.7.3 hands the pair over as its
    str() ("(-0.52, True)": api/instance.py's unwrap_generation_output turns every output that is not text into a
    string), other versions as the pair; Python writes floats so that they read back exactly."""
    if isinstance(result, str):
        try:
            result = ast.literal_eval(result)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"not a (log-likelihood, is greedy) pair: {result!r}") from err
    loglikelihood, _greedy = result
    return float(loglikelihood)


def process_results_mc(doc: dict, results: list) -> dict:
    """`results`: one (log-likelihood, is greedy) pair per option, in letter order. The chosen letter is the most
    likely one; the record also keeps every option's log-likelihood."""
    if len(results) != len(doc["choices"]):
        raise ValueError(f"cvbench item {doc['idx']}: {len(results)} log-likelihoods for {len(doc['choices'])} "
                         "choices")
    loglikelihoods = [_loglikelihood(r) for r in results]
    best = max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)
    return _records(doc, LETTERS[best], LETTERS[best], MC_RULE_ID, loglikelihoods=loglikelihoods)
