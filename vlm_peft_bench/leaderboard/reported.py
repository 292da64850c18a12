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
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vlm_peft_bench.leaderboard import LeaderboardError

REQUIRED_SOURCE = ("id", "title", "base", "task", "setting", "metric", "unit", "rows")
REQUIRED_ROW = ("method", "label", "trainable_percent", "value")


def load_reported(path: Path | None) -> list[dict]:
    """The YAML's sources, checked, with values as fractions in [0, 1] when the unit is percent."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"reported-results file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("schema_version") != 1:
        raise LeaderboardError(f"{path}: expected schema_version: 1")
    sources, seen = [], set()
    for index, source in enumerate(data.get("sources") or []):
        missing = [k for k in REQUIRED_SOURCE if k not in source]
        if missing:
            raise LeaderboardError(f"{path}: source {index} lacks {', '.join(missing)}")
        if source["id"] in seen:
            raise LeaderboardError(f"{path}: two sources have the id {source['id']!r}")
        seen.add(source["id"])
        if source["unit"] not in ("percent", "fraction"):
            raise LeaderboardError(f"{path}: source {source['id']}: unit must be percent or fraction")
        scale = 100.0 if source["unit"] == "percent" else 1.0
        rows = []
        for row in source["rows"]:
            missing = [k for k in REQUIRED_ROW if k not in row]
            if missing:
                raise LeaderboardError(f"{path}: a row of {source['id']} lacks {', '.join(missing)}")
            rows.append({**row, "fraction": float(row["trainable_percent"]) / 100.0,
                         "score": float(row["value"]) / scale})
        sources.append({**source, "rows": rows})
    return sources
