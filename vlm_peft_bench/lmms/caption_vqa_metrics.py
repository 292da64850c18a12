"""Per-item records and whole-split aggregation for the `coco_captions*` and `vqa_v2*` tasks.

Captions: every item's `process_results` returns one record (id, raw response, prediction, references) under
each of the eight metric names; each metric's aggregation then asks `corpus_caption_scores` for the scores of
the whole split. The scorers run ONCE per distinct set of records: the result is kept in memory under a hash of
the records' content (never in a file, never for other records), so the eight aggregations share one scoring
pass (one PTB tokenizer, one METEOR JVM) and CIDEr's IDF comes from the whole split. SPICE's per-image scores
from that pass are kept too, until `per_item_scores` hands them over (our `lmms_eval` writes them into the results
file, where the leaderboard draws SPICE's bootstrap interval from them).

Multi-process runs: lmms-eval (0.7.3, `evaluator.evaluate`) gathers every rank's per-item results to rank 0
(`torch.distributed.gather_object` over `task_output.sample_metrics`, one list per metric) and only then, on
rank 0 alone, calls `TaskOutput.calculate_aggregate_metric`, which calls these aggregations with the full list.
So scores are always computed over the whole evaluated split, never per shard.

This lives in the package rather than in the tasks' utils.py on purpose: lmms-eval's `!function utils.fn`
(`lmms_eval.utils.import_function`) executes utils.py afresh for every tag, so each metric's aggregation would
sit in its own copy of that module and a cache there would never be shared.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict

from loguru import logger

from vlm_peft_bench import scoring  # its scorers are looked up at call time (tests may wrap them)
from vlm_peft_bench.scoring import CAPTION_METRICS

VQA_ANSWER_TYPES = {"yes/no": "vqa_accuracy_yes_no", "number": "vqa_accuracy_number", "other": "vqa_accuracy_other"}
SPICE_NOTE_PREFIX = "SPICE unavailable: "

_CACHE_SIZE = 4  # distinct record sets kept (a run aggregates one split per task; more is never needed)
_cache: OrderedDict[str, dict] = OrderedDict()
_per_item: dict[str, dict[str, dict[str, float]]] = {}  # records digest -> metric -> {item id: score}
_lock = threading.Lock()


def _response(results: list) -> str:
    """The model's text for an item; anything else (no result, None) counts as an empty answer."""
    response = results[0] if results else ""
    return response if isinstance(response, str) else ""


# --- captions -----------------------------------------------------------------------------------------------


def clean_caption(text: str) -> str:
    """Whitespace only: newlines and tabs become spaces (METEOR's line protocol cannot carry them)."""
    return " ".join(text.split())


def caption_record(doc: dict, results: list) -> dict:
    response = _response(results)
    return {
        "id": str(doc["question_id"]),
        "image_id": doc.get("id"),
        "response": response,
        "prediction": clean_caption(response),
        "references": [str(r) for r in doc["answer"]],
    }


def records_digest(records: list[dict]) -> str:
    """A content hash of (id, prediction, references) over all records, independent of their order."""
    rows = sorted([r["id"], r["prediction"], list(r["references"])] for r in records)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def _score_captions(predictions: dict[str, str], references: dict[str, list[str]]
                    ) -> tuple[dict[str, float | str], dict[str, dict[str, float]]]:
    """The one call to the caption scorers, and how an unavailable SPICE is reported: (scores, the per-item
    scores of each metric that has a number and keeps them).

    SPICE needs Stanford CoreNLP 3.6.0 jars that may be absent; `caption_scores` then leaves SPICE out and
    `spice_status()` says why and what to do. The SPICE metric's value is then a short note string
    ("SPICE unavailable: Stanford CoreNLP 3.6.0 not found (see docs/tasks.md: SPICE)"), which lmms-eval writes into the
    results JSON and prints in its table as it is; the full reason goes to the log (and, through our `lmms_eval`,
    into the results file's `vlm_peft_bench.notes`). A non-finite SPICE score is reported the same way.
    """
    report = scoring.caption_report(predictions, references)
    scores: dict[str, float | str] = dict(report.scores)
    spice = scores.get("SPICE")
    if not (isinstance(spice, (int, float)) and math.isfinite(spice)):
        reason = scoring.spice_status()
        if spice is not None or not reason:
            reason = f"{SPICE_NOTE_PREFIX}the scorer returned {spice!r} for SPICE instead of a score"
        logger.warning(reason)
        scores["SPICE"] = spice_note(reason)
    return scores, {metric: dict(values) for metric, values in report.per_item.items() if metric in scores
                    and not isinstance(scores[metric], str)}


def spice_note(reason: str, limit: int = 100) -> str:
    """The short form of a "SPICE unavailable: ..." reason that stands as SPICE's value (tables stay readable)."""
    head = reason.split(" (", 1)[0].split(". ", 1)[0].rstrip(".")
    if len(head) > limit:
        head = head[: limit - 3] + "..."
    return f"{head} (see docs/tasks.md: SPICE)"


def corpus_caption_scores(records: list[dict]) -> dict[str, float | str]:
    """All caption metrics over the whole split, computed once per distinct set of records."""
    digest = records_digest(records)
    with _lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
        predictions: dict[str, str] = {}
        references: dict[str, list[str]] = {}
        for r in records:
            if r["id"] in predictions:
                raise ValueError(f"caption scoring: item id {r['id']!r} appears twice; ids must be unique")
            predictions[r["id"]] = r["prediction"]
            references[r["id"]] = list(r["references"])
        scores, per_item = _score_captions(predictions, references)
        _cache[digest] = scores
        if per_item:
            _per_item[digest] = per_item
            while len(_per_item) > _CACHE_SIZE:  # never handed over (plain lmms-eval): the oldest go
                del _per_item[next(iter(_per_item))]
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return scores


def per_item_scores(records: list[dict]) -> dict[str, dict[str, float]]:
    """Hand over (and forget) the per-item scores the scoring of these records kept: {"SPICE": {item id: F}} when
    SPICE ran, {} when it did not or these records were not scored in this process."""
    with _lock:
        return _per_item.pop(records_digest(records), {})


def caption_aggregation(metric: str):
    """lmms-eval aggregation for one caption metric (a float, or SPICE's "unavailable: ..." note)."""
    if metric not in CAPTION_METRICS:
        raise ValueError(f"unknown caption metric {metric!r}")

    def aggregate(records: list[dict]) -> float | str:
        return corpus_caption_scores(records)[metric]

    aggregate.__name__ = f"aggregate_{metric.lower()}"
    return aggregate


# --- VQA ----------------------------------------------------------------------------------------------------


def vqa_record(doc: dict, results: list) -> dict:
    """Official VQA accuracy of one answer: the prediction is the stripped response, nothing more (the
    official scorer does its own normalization)."""
    response = _response(results)
    prediction = response.strip()
    answers = [a["answer"] for a in doc["answers"]]
    return {
        "question_id": doc["question_id"],
        "answer_type": doc.get("answer_type"),
        "response": response,
        "prediction": prediction,
        "accuracy": float(scoring.vqa_accuracy(prediction, answers)),
    }


def vqa_type_aggregation(answer_type: str):
    """Mean accuracy over the items of one answer type (NaN when the evaluated items have none, as cvbench's
    missing strata)."""

    def aggregate(records: list[dict]) -> float:
        values = [r["accuracy"] for r in records if r["answer_type"] == answer_type]
        return sum(values) / len(values) if values else math.nan

    aggregate.__name__ = f"aggregate_{VQA_ANSWER_TYPES[answer_type]}"
    return aggregate
