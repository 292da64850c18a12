"""Sweep files (written by `vlm-peft-bench sweep`, `vlm_peft_bench/train/sweep.py`) found among the results
folders, read and checked; the leaderboard plots each (accuracy against rank or lowest layer) and tabulates it."""

from __future__ import annotations

from pathlib import Path

from vlm_peft_bench.leaderboard.problems import BadFile
from vlm_peft_bench.leaderboard.readfile import files_under, kind_of, read_json

KIND = "vlm-peft-bench sweep"  # the `kind` of a sweep file (train/sweep.py writes it)
FIX = "re-run `vlm-peft-bench sweep` for it, or remove the file"
HEADER = ("recipe", "axis", "axis_label", "task", "base", "seed", "metric", "points")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)


def check_sweep(data: dict) -> list[str]:
    """What keeps a sweep file from being read; [] when it is fine."""
    problems = [f"no {key}" for key in HEADER if key not in data]
    points = data.get("points", [])
    if not isinstance(points, list) or not points:
        problems.append("points is not a non-empty list")
        points = []
    for i, point in enumerate(points):
        where = f"points[{i}]"
        if not isinstance(point, dict):
            problems.append(f"{where} is {kind_of(point)}, expected an object")
            continue
        if not (_is_number(point.get("value"))):
            problems.append(f"{where}.value is not a number")
        for key in ("train", "held_out"):
            if point.get(key) is not None and not _is_number(point[key]):
                problems.append(f"{where}.{key} is {kind_of(point[key])}, expected a number or null")
        test = point.get("test")
        if not (isinstance(test, dict) and _is_number(test.get("value")) and _interval(test.get("ci95"))):
            problems.append(f"{where}.test needs a number value and a two-number ci95")
        params = point.get("params")
        if not (isinstance(params, dict) and _is_number(params.get("fraction"))):
            problems.append(f"{where}.params.fraction is not a number")
    base = data.get("base_test")
    if base is not None and not (isinstance(base, dict) and _is_number(base.get("value"))
                                 and _interval(base.get("ci95"))):
        problems.append("base_test needs a number value and a two-number ci95")
    return ["sweep file with " + "; ".join(problems)] if problems else []


def summary(data: dict, shown: str) -> dict:
    """What the leaderboard document keeps of a sweep: its settings and, per point, the three scores."""
    points = [{"value": p["value"], "train": p.get("train"), "held_out": p.get("held_out"),
               "test": p["test"]["value"], "ci95": p["test"]["ci95"], "n": p["test"].get("n"),
               "trainable": p["params"].get("trainable"), "fraction": p["params"]["fraction"],
               "adapter_hash": p.get("adapter_hash")} for p in sorted(data["points"], key=lambda p: p["value"])]
    base = data.get("base_test")
    return {"file": shown, "recipe": data["recipe"], "axis": data["axis"], "axis_label": data["axis_label"],
            "task": data["task"], "base": data["base"], "seed": data["seed"], "metric": data["metric"],
            "layers_in_base": data.get("layers_in_base"), "command": data.get("command"),
            "base_test": {"value": base["value"], "ci95": base["ci95"]} if base else None, "points": points}


def read_sweeps(dirs: list[Path]) -> tuple[list[dict], list]:
    """([the summary of every sweep file under the results folders, by file], [the problem of each
    `sweep__*.json` that cannot be read or has another layout])."""
    sweeps, problems = [], []
    for path, shown in files_under(dirs, "sweep__*.json"):
        try:
            data = read_json(path, shown, FIX)
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise BadFile(shown, f"holds {kind_of(data)}, not a sweep file (an object of kind {KIND!r})",
                              FIX)
            found = check_sweep(data)
            if found:
                raise BadFile(shown, found[0], FIX)
        except BadFile as err:
            problems.append(err.problem)
            continue
        sweeps.append(summary(data, shown))
    return sorted(sweeps, key=lambda s: s["file"]), problems
