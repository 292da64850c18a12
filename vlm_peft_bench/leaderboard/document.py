"""The leaderboard document (leaderboard.json): boards -> groups -> rows, with every number's provenance.

Versioned by `schema` + `schema_version`; `SCHEMA` below is its JSON Schema (written beside it as schema.json).
A board is one base model with one prompt template (measured) or one published source (reported); a group is
one task evaluated one way within a board (one plot panel, one Pareto frontier); a row is one base + adapter
within a board, with a cell per group it was evaluated on.
"""

from __future__ import annotations

import math

from vlm_peft_bench.leaderboard import SCHEMA_ID, SCHEMA_VERSION, LeaderboardError, ci
from vlm_peft_bench.leaderboard.compare import Board, Group, row_key
from vlm_peft_bench.leaderboard.identify import identify, plotted
from vlm_peft_bench.leaderboard.pareto import pareto_front
from vlm_peft_bench.leaderboard.results import TaskResult
from vlm_peft_bench.leaderboard.tasks import metrics_of, spec_for
from vlm_peft_bench.methods.table import PARAMS_DEFINITION
from vlm_peft_bench.scoring import spectrum

DEFINITIONS = {
    "fraction": None,  # filled from vlm_peft_bench.methods.table.PARAMS_DEFINITION
    "ci95": (f"percentile bootstrap over items ({ci.DRAWS} draws, seed {ci.SEED}) of the task's own aggregation, "
             "from the run's sample log; null where the log is absent or the metric is a corpus metric"),
    "derived": ("parameters computed from the model's hidden states rather than trained (steering vectors' "
                "entries); a steering row has 0 trainable parameters"),
    "plotted": ("the fraction a row is plotted at and compared by on the Pareto frontier: (trainable + derived) "
                "/ total, equal to the trainable fraction for every trained method"),
    "pareto": ("within a group, a row is on the frontier when no other row has a lower-or-equal plotted "
               "fraction and a higher-or-equal headline score, one of them strictly"),
    "base_on_log_axis": ("the untrained base (fraction 0) is drawn at the left edge of the log axis, one decade "
                         "below the smallest trained fraction of its group, on a tick labelled 0"),
    "effective_rank_ratio": spectrum.DEFINITION,
    "reported": "published numbers copied from the cited source, not measured here; never in a measured group",
}


def _num(value, digits: int = 4):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(float(value)):
        return round(float(value), digits)
    return None


def _sig(value, digits: int = 6):
    return None if value is None else float(f"{float(value):.{digits}g}")


def _item_interval(result: TaskResult, name: str, metric: dict) -> str:
    """Set `metric`'s 95% interval from the results file's per-item scores of `name` (SPICE); says how it went."""
    values = result.per_item.get(name)
    if metric["value"] is None:
        return f"{name}: no score"
    if not values:
        return f"{name}: n/a (no per-item scores in the results file; run with --log_samples)"
    if result.n is not None and len(values) != result.n:
        return f"{name}: n/a ({len(values)} per-item scores for {result.n} items)"
    try:
        interval = ci.item_interval(name, [float(v) for v in values.values()])
    except ci.UnscorableLog as err:
        return f"{name}: n/a ({err})"
    if abs(interval["value"] - result.scores[name]) > 1e-6:
        return f"{name}: n/a (the per-item scores do not reproduce it)"
    metric["ci95"] = [_num(interval["ci95"][0]), _num(interval["ci95"][1])]
    return f"{name}: bootstrap over its per-image scores"


def measured_cell(result: TaskResult, group: Group) -> dict:
    spec = spec_for(result.task)
    names = metrics_of(spec)
    metrics = {}
    for name in names:
        raw = result.scores.get(name)
        note = raw if isinstance(raw, str) else None
        if note is None and name in result.notes:
            note = str(result.notes[name])
        metrics[name] = {"value": _num(raw), "ci95": None, "note": note}
    ci_note = None
    if spec.ci is None:
        ci_note = "n/a: corpus metric (an interval would need re-scoring)"
    elif not result.samples:
        ci_note = f"n/a: {result.samples_note}" if result.samples_note else "n/a: no sample log"
    else:
        try:
            intervals = ci.point_and_interval(spec.ci, result.samples, names)
        except ci.UnscorableLog as err:
            intervals, ci_note = {}, f"n/a: {err}"
        for name, interval in intervals.items():
            if name not in metrics:
                continue
            if metrics[name]["value"] is None or abs(interval["value"] - result.scores[name]) > 1e-6:
                ci_note = f"n/a: the sample log does not reproduce {name}"
                continue
            metrics[name]["ci95"] = [_num(interval["ci95"][0]), _num(interval["ci95"][1])]
    item_notes = [_item_interval(result, name, metrics[name]) for name in spec.item_ci if name in metrics]
    if spec.ci is None and spec.item_ci:
        others = ", ".join(n for n in names if n not in spec.item_ci)
        ci_note = "; ".join([f"n/a: corpus metrics (an interval would need re-scoring): {others}", *item_notes])
    return {
        "group": group.id, "metrics": metrics, "ci_note": ci_note, "n": result.n, "date": result.date,
        "seeds": result.seeds, "versions": result.versions, "task_hash": result.task_hash,
        "inputs_sha256": result.inputs_sha256, "prompt_template": result.prompt_template,
        "task_prompt": result.fingerprint.get("prompt_kwargs"), "results_file": result.file,
        "samples_file": result.samples_file, "model_args": result.model_args, "pareto": False, "repr_rank": None,
    }


def _repr_summary(doc: dict) -> dict:
    return {"effective_rank_ratio": doc["effective_rank_ratio"], "effective_rank": doc["effective_rank"],
            "hidden_size": doc["hidden_size"], "n": doc["n"], "positions": doc["positions"],
            "cumulative": doc["cumulative"], "file": doc["_file"]}


def measured_rows(board: Board, cards: dict, repr_docs: list[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for group in board.groups:
        for result in group.members:
            key = row_key(result)
            if key not in rows:
                who = identify(result.base, result.adapter, cards, result.params, result.adapter_method)
                params = who["params"]
                params = {**params, "fraction": _sig(params["fraction"]), "plotted": _sig(plotted(params))}
                label = who["adapter_id"] or "untrained base"
                rows[key] = {"id": f"{board.id}:{key[:12]}", "kind": "measured", "board": board.id,
                             "label": label, **{k: v for k, v in who.items() if k != "params"}, "params": params,
                             "cells": {}}
            rows[key]["cells"][group.id] = measured_cell(result, group)
    for row in rows.values():
        cells = list(row["cells"].values())
        latest = max(cells, key=lambda c: c["date"])
        row["date"] = latest["date"]
        row["versions"] = latest["versions"]
        row["seeds"] = {"training": row.pop("training_seed"),
                        "evaluation": latest["seeds"] if all(c["seeds"] == latest["seeds"] for c in cells) else None}
        for cell in cells:
            task = next(g.task for g in board.groups if g.id == cell["group"])
            cell["repr_rank"] = _match_repr(row, board, task, repr_docs)
    return sorted(rows.values(), key=_row_order)


def _match_repr(row: dict, board: Board, task: str, repr_docs: list[dict]) -> dict | None:
    matches = [d for d in repr_docs if d["task"] == task
               and (d["base"]["hash"] == board.key["base_hash"] if board.key["base_hash"] else
                    d["base"]["name"] == board.key["base"])
               and (d["adapter"] or {}).get("sha256") == row["adapter_hash"]]
    if len(matches) > 1:
        raise LeaderboardError(f"several repr-rank files for {row['label']} on {task}: "
                               + ", ".join(d["_file"] for d in matches) + "; keep one")
    return _repr_summary(matches[0]) if matches else None


def _row_order(row: dict):
    fraction = row["params"]["plotted"]
    return (fraction is None, fraction if fraction is not None else 0.0, row["label"], row["id"])


def reported_board(source: dict) -> tuple[dict, dict, list[dict]]:
    board_id = f"r-{source['id']}"
    group = {"id": f"{board_id}:{source['task']}", "board": board_id, "kind": "reported", "task": source["task"],
             "label": f"{source['task']} (reported: {source['setting']})", "headline": source["metric"],
             "metrics": [source["metric"]], "fingerprint": {"source": source["id"], "setting": source["setting"]},
             "ci": None, "pareto": []}
    rows = []
    for index, entry in enumerate(source["rows"]):
        cell = {"group": group["id"], "metrics": {source["metric"]: {
                    "value": _num(entry["score"]), "ci95": None, "note": "as published"}},
                "ci_note": "n/a: reported", "n": None, "date": str(source.get("year", "")), "seeds": None,
                "versions": None, "task_hash": None, "inputs_sha256": None, "prompt_template": None,
                "task_prompt": None, "results_file": None, "samples_file": None, "model_args": None,
                "pareto": False, "repr_rank": None}
        rows.append({"id": f"{board_id}:{index}", "kind": "reported", "board": board_id, "label": entry["label"],
                     "method": entry["method"], "adapter_id": None, "adapter_hash": None, "card": None,
                     "note": entry.get("note"), "date": str(source.get("year", "")), "versions": None,
                     "seeds": None,
                     "params": {"trainable": entry.get("trainable"), "total": entry.get("total"),
                                "fraction": _sig(entry["fraction"]), "derived": 0,
                                "plotted": _sig(entry["fraction"]), "source": "reported"},
                     "cells": {group["id"]: cell}})
    board = {"id": board_id, "kind": "reported", "label": f"{source['base']} (reported)",
             "base": {"name": source["base"], "hash": None}, "prompt_template": None, "system_instruction": None,
             "groups": [group["id"]], "rows": [r["id"] for r in rows],
             "source": {k: source.get(k) for k in ("id", "title", "authors", "year", "url", "where", "setting",
                                                     "metric", "note")}}
    return board, group, rows


def mark_pareto(group: dict, rows: list[dict]) -> None:
    headline = group["headline"]
    points = [(row["id"], row["params"]["plotted"], row["cells"][group["id"]]["metrics"][headline]["value"])
              for row in rows if group["id"] in row["cells"]]
    group["pareto"] = pareto_front(points)
    for row in rows:
        if group["id"] in row["cells"]:
            row["cells"][group["id"]]["pareto"] = row["id"] in group["pareto"]


def build_document(boards: list[Board], cards: dict, sources: list[dict], repr_docs: list[dict],
                   notes: list[str], inputs: dict, command: str) -> dict:
    doc_boards, doc_groups, doc_rows = [], [], []
    for board in boards:
        rows = measured_rows(board, cards, repr_docs)
        groups = []
        for group in board.groups:
            spec = spec_for(group.task)
            groups.append({"id": group.id, "board": board.id, "kind": "measured", "task": group.task,
                           "label": group.label, "headline": spec.headline, "metrics": list(metrics_of(spec)),
                           "fingerprint": group.fingerprint, "ci": spec.ci, "pareto": []})
        for group in groups:
            mark_pareto(group, rows)
        member = board.groups[0].members[0]
        doc_boards.append({"id": board.id, "kind": "measured", "label": board.label, "base": member.base,
                           "prompt_template": member.prompt_template,
                           "system_instruction": member.system_instruction, "groups": [g["id"] for g in groups],
                           "rows": [r["id"] for r in rows], "source": None})
        doc_groups += groups
        doc_rows += rows
        notes = notes + [f"{r['label']} on {board.label}: {r['note']}" for r in rows if r.get("note")]
    for source in sources:
        board, group, rows = reported_board(source)
        mark_pareto(group, rows)
        doc_boards.append(board)
        doc_groups.append(group)
        doc_rows += rows
    return {
        "schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION, "command": command, "inputs": inputs,
        "definitions": {**DEFINITIONS, "fraction": PARAMS_DEFINITION}, "notes": notes,
        "boards": doc_boards, "groups": doc_groups, "rows": doc_rows,
    }


_NULLABLE_STR = {"type": ["string", "null"]}
_METRIC = {"type": "object", "required": ["value", "ci95", "note"], "properties": {
    "value": {"type": ["number", "null"]},
    "ci95": {"oneOf": [{"type": "null"}, {"type": "array", "items": {"type": ["number", "null"]},
                                          "minItems": 2, "maxItems": 2}]},
    "note": _NULLABLE_STR}}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "vlm-peft-bench/leaderboard/1.0",
    "title": "vlm-peft-bench leaderboard",
    "description": "Accuracy against trainable-parameter fraction. boards (a base + prompt, or a published source) "
                   "hold groups (one task evaluated one way: one plot panel, one Pareto frontier) and rows (one base "
                   "+ adapter, with a cell per group). kind 'reported' marks published numbers. Scores are "
                   "fractions in [0, 1] except caption metrics (CIDEr can exceed 1).",
    "type": "object",
    "required": ["schema", "schema_version", "command", "inputs", "definitions", "notes", "boards", "groups", "rows"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"const": SCHEMA_VERSION},
        "command": {"type": "string", "description": "the command that regenerates this file"},
        "inputs": {"type": "object", "description": "results files, zoo, reported YAML and repr-rank files read"},
        "definitions": {"type": "object", "additionalProperties": {"type": "string"}},
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "separations made, rows with unknown parameters, tasks skipped"},
        "boards": {"type": "array", "items": {"type": "object", "required": [
            "id", "kind", "label", "base", "prompt_template", "system_instruction", "groups", "rows", "source"],
            "properties": {"kind": {"enum": ["measured", "reported"]},
                           "source": {"type": ["object", "null"],
                                      "description": "the citation, for reported boards"}}}},
        "groups": {"type": "array", "items": {"type": "object", "required": [
            "id", "board", "kind", "task", "label", "headline", "metrics", "fingerprint", "ci", "pareto"],
            "properties": {"kind": {"enum": ["measured", "reported"]},
                           "headline": {"type": "string", "description": "plotted and ranked metric"},
                           "metrics": {"type": "array", "items": {"type": "string"}},
                           "fingerprint": {"type": "object",
                                           "description": "what must agree for results to share this group"},
                           "ci": {"type": ["string", "null"], "description": "bootstrap recipe, or null"},
                           "pareto": {"type": "array", "items": {"type": "string"},
                                      "description": "row ids on the frontier, by increasing fraction"}}}},
        "rows": {"type": "array", "items": {"type": "object", "required": [
            "id", "kind", "board", "label", "method", "adapter_id", "adapter_hash", "card", "params", "date",
            "versions", "seeds", "cells"],
            "properties": {
                "kind": {"enum": ["measured", "reported"]},
                "method": {"type": "string", "description": "base, reft, lora, prefix, pt-lora, full, ..."},
                "params": {"type": "object", "required": ["trainable", "total", "fraction", "derived", "plotted",
                                                          "source"],
                           "properties": {"trainable": {"type": ["integer", "null"]},
                                          "total": {"type": ["integer", "null"]},
                                          "fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                                          "derived": {"type": ["integer", "null"]},
                                          "plotted": {"type": ["number", "null"], "minimum": 0},
                                          "source": _NULLABLE_STR}},
                "cells": {"type": "object", "description": "by group id", "additionalProperties": {
                    "type": "object", "required": ["group", "metrics", "ci_note", "n", "date", "pareto",
                                                   "repr_rank", "results_file", "samples_file"],
                    "properties": {"metrics": {"type": "object", "additionalProperties": _METRIC},
                                   "pareto": {"type": "boolean"},
                                   "repr_rank": {"type": ["object", "null"]}}}}}}},
        "sweeps": {"type": "array", "description": "vlm-peft-bench sweep files read (train/sweep.py): a recipe "
                   "trained at each value of one setting (rank, or lowest intervened layer)",
                   "items": {"type": "object", "required": [
                       "file", "recipe", "axis", "axis_label", "task", "base", "seed", "metric", "base_test",
                       "points"],
                       "properties": {"axis": {"enum": ["rank", "lowest_layer"]},
                                      "points": {"type": "array", "items": {"type": "object", "required": [
                                          "value", "train", "held_out", "test", "ci95", "n", "trainable",
                                          "fraction"]}}}}},
    },
}
