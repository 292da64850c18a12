"""Published numbers ("reported" rows) from a YAML file: each source names its paper, base, task, setting and
metric, and lists rows of method, trainable percentage and score. They form boards of their own, marked
reported everywhere, and never share a group, a frontier or a plot panel with measured results.

    schema_version: 1
    sources:
      - id: vl-reft
        title: ...            # plus authors, year, url, where (table or figure)
        base: nanoLLaVA
        task: cvbench
        setting: 80/20 split of CV-Bench
        metric: accuracy      # as published
        unit: percent         # or fraction
        rows:
          - {method: reft, label: LoReFT, trainable_percent: 0.019, value: 65.7}

A file that is not valid YAML or breaks this format is refused with every problem named (source by id or
index, row by index); --skip-bad never leaves it out, since it is named explicitly on the command line.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from vlm_peft_bench.leaderboard import LeaderboardError
from vlm_peft_bench.leaderboard.problems import BadFile
from vlm_peft_bench.leaderboard.readfile import kind_of, yaml_problem
from vlm_peft_bench.paths import display_path

REQUIRED_SOURCE = ("id", "title", "base", "task", "setting", "metric", "unit", "rows")
REQUIRED_ROW = ("method", "label", "trainable_percent", "value")
FIX = "fix it (format: vlm_peft_bench/leaderboard/reported.py)"


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _source_problems(index: int, source) -> list[str]:
    if not isinstance(source, dict):
        return [f"source {index} is {kind_of(source)}, expected a mapping"]
    name = f"source {source.get('id', index)}"
    missing = [k for k in REQUIRED_SOURCE if k not in source]
    if missing:
        return [f"{name} lacks {', '.join(missing)}"]
    problems = [] if source["unit"] in ("percent", "fraction") else [f"{name}: unit must be percent or fraction"]
    if not isinstance(source["rows"], list):
        return problems + [f"{name}: rows is {kind_of(source['rows'])}, expected a list"]
    for number, row in enumerate(source["rows"]):
        if not isinstance(row, dict):
            problems.append(f"{name}: row {number} is {kind_of(row)}, expected a mapping")
            continue
        missing = [k for k in REQUIRED_ROW if k not in row]
        if missing:
            problems.append(f"{name}: row {number} lacks {', '.join(missing)}")
        elif _number(row["trainable_percent"]) is None or _number(row["value"]) is None:
            problems.append(f"{name}: row {number}: trainable_percent and value must be numbers")
    return problems


def _check(data) -> list[str]:
    if not isinstance(data, dict):
        return [f"holds {kind_of(data)}, expected a mapping with schema_version and sources"]
    if data.get("schema_version") != 1:
        return [f"schema_version is {data.get('schema_version')!r}, expected 1"]
    sources = data.get("sources") or []
    if not isinstance(sources, list):
        return [f"sources is {kind_of(sources)}, expected a list"]
    problems = [p for index, source in enumerate(sources) for p in _source_problems(index, source)]
    ids = [s["id"] for s in sources if isinstance(s, dict) and "id" in s]
    problems += [f"two sources have the id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1}, key=str)]
    return problems


def load_reported(path: Path | None) -> list[dict]:
    """The YAML's sources, checked, with values as fractions in [0, 1] when the unit is percent."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"reported-results file {path} does not exist")
    shown = display_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise BadFile(shown, yaml_problem(err), FIX, False) from err
    except (OSError, UnicodeDecodeError) as err:
        raise BadFile(shown, f"cannot be read ({getattr(err, 'strerror', None) or err})", FIX, False) from err
    problems = _check(data)
    if problems:
        raise BadFile(shown, "; ".join(problems), FIX, False)
    sources = []
    for source in data.get("sources") or []:
        scale = 100.0 if source["unit"] == "percent" else 1.0
        rows = [{**row, "fraction": float(row["trainable_percent"]) / 100.0, "score": float(row["value"]) / scale}
                for row in source["rows"]]
        sources.append({**source, "rows": rows})
    return sources
