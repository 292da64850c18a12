"""repr-rank documents (written by `vlm-peft-bench repr-rank`, `vlm_peft_bench/measure/repr_rank.py`) found among
the results folders, read and checked; the leaderboard attaches each to its row."""

from __future__ import annotations

from pathlib import Path

from vlm_peft_bench.leaderboard.problems import BadFile
from vlm_peft_bench.leaderboard.readfile import files_under, kind_of, read_json
from vlm_peft_bench.scoring.spectrum import DOCUMENT_SCHEMA, DOCUMENT_VERSION

SUMMARY_FIELDS = ("effective_rank_ratio", "effective_rank", "hidden_size", "n", "positions", "cumulative")


def check_document(data: dict) -> list[str]:
    """What keeps a repr-rank document (one whose `schema` is ours) from being read; [] when it is fine."""
    if data.get("schema_version") != DOCUMENT_VERSION:
        return [f"repr-rank schema_version is {data.get('schema_version')!r}: written by another version of "
                f"vlm-peft-bench (this one reads {DOCUMENT_VERSION})"]
    problems = [f"no {key}" for key in ("task", "base", "adapter", *SUMMARY_FIELDS) if key not in data]
    if not isinstance(data.get("base", {}), dict):
        problems.append("base is not an object")
    if not isinstance(data.get("adapter"), (dict, type(None))):
        problems.append("adapter is neither an object nor null")
    if not isinstance(data.get("cumulative", []), list):
        problems.append("cumulative is not a list")
    return ["repr-rank document with " + "; ".join(problems)] if problems else []


def read_repr_files(dirs: list[Path]) -> tuple[list[dict], list]:
    """(every repr-rank document under the results folders (files whose `schema` says so), [the problem of each
    `repr_rank*.json` that cannot be read or has another layout]); JSON files of another schema are ignored."""
    fix = "re-run `vlm-peft-bench repr-rank` for it, or remove the file"
    docs, problems = [], []
    for path, shown in files_under(dirs, "repr_rank*.json"):
        try:
            data = read_json(path, shown, fix)
            if not isinstance(data, dict):
                raise BadFile(shown, f"holds {kind_of(data)}, not a repr-rank document (an object)", fix)
            if data.get("schema") != DOCUMENT_SCHEMA:
                continue
            found = check_document(data)
            if found:
                raise BadFile(shown, found[0], fix)
        except BadFile as err:
            problems.append(err.problem)
            continue
        docs.append({**data, "_file": shown})
    return docs, problems
