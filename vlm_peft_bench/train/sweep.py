"""`vlm-peft-bench sweep`: the VL-ReFT report's two sweeps as one command each.

`--rank 1,2,4,...` trains the recipe once per rank; `--lowest-layer 0,1,...` once per lowest layer L, intervening
on layers L..last (the report's layer figure). Every point is trained with the same seed and scored three ways:
on a seeded sample of the items it was trained on ("train"), on the held-out 20% of the training split
("held-out") and on the test split through lmms-eval with a 95% bootstrap interval ("test"); the untrained base
is scored once on the test split. The result is one JSON file per sweep (`sweep__<recipe>__<axis>__<base>__<task>
.json`), which `leaderboard build` plots and tabulates. The file is rewritten after every point, so an
interrupted sweep resumes where it stopped: points already in the file (same recipe, task, base, seed) are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench import __version__
from vlm_peft_bench.adapters.accounting import base_config
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.paths import display_path
from vlm_peft_bench.train.data import load_task

KIND = "vlm-peft-bench sweep"
AXES = {"rank": "rank", "lowest_layer": "lowest intervened layer (layers L..last)"}


def parse_values(text: str, axis: str, n_layers: int) -> list[int]:
    """`1,2,4` -> [1, 2, 4]; for the layer axis `all` means every layer of the base as the lowest."""
    if axis == "lowest_layer" and text.strip() == "all":
        return list(range(n_layers))
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise AdapterError(f"--{axis.replace('_', '-')} {text!r}: whole numbers separated by commas") from err
    if not values or len(set(values)) != len(values):
        raise AdapterError(f"--{axis.replace('_', '-')} {text!r}: at least one value, none repeated")
    low, high = (1, None) if axis == "rank" else (0, n_layers - 1)
    bad = [v for v in values if v < low or (high is not None and v > high)]
    if bad:
        span = f">= {low}" if high is None else f"in {low}..{high} (the base has {n_layers} layers)"
        raise AdapterError(f"--{axis.replace('_', '-')}: {bad} out of range; each must be {span}")
    return sorted(values)


def sweep_file(out: Path, recipe: str, axis: str, base: str, task: str) -> Path:
    return Path(out) / f"sweep__{recipe}__{axis}__{base}__{task}.json"


def _overrides(axis: str, value: int, n_layers: int) -> dict:
    return {"rank": value} if axis == "rank" else {"layers": list(range(value, n_layers))}


def _previous(path: Path, header: dict) -> list[dict]:
    """The points of an earlier run of the same sweep (same recipe, axis, task, base, seed); none otherwise."""
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    same = all(old.get(k) == header[k] for k in ("kind", "recipe", "axis", "task", "base", "seed"))
    return [p for p in old.get("points", []) if isinstance(p, dict)] if same else []


def run_sweep(recipe: str, task_name: str, axis: str, values: list[int], out: Path | str,
              base: str = "nanollava-tiny", seed: int = 0, device: str | None = None, limit: int | None = None,
              log=print) -> Path:
    """Train and score one point per value; returns the sweep file (rewritten after every point)."""
    from vlm_peft_bench.methods.recipe import load_recipe
    from vlm_peft_bench.train.evaluation import evaluate_with_lmms
    from vlm_peft_bench.train.trainer import train

    if axis not in AXES:
        raise AdapterError(f"axis {axis!r}: use one of {', '.join(AXES)}")
    load_recipe(recipe)  # an unknown recipe fails before anything runs
    out = Path(out)
    n_layers = base_config(base).text_config.num_hidden_layers
    task = load_task(task_name)
    headline = task.config.metric_list[0]["metric"]
    path = sweep_file(out, recipe, axis, base, task_name)
    header = {"kind": KIND, "recipe": recipe, "axis": axis, "axis_label": AXES[axis], "task": task_name,
              "base": base, "seed": seed, "metric": headline, "layers_in_base": n_layers}
    points = {p["value"]: p for p in _previous(path, header) if p.get("value") in values}
    if points:
        log(f"{display_path(path)}: keeping {len(points)} finished point(s): {sorted(points)}")
    base_test = None
    if path.is_file():
        base_test = json.loads(path.read_text(encoding="utf-8")).get("base_test") if points else None
    for value in values:
        if value in points:
            continue
        weights = out / "weights" / f"{recipe}__{axis}{value}__{base}__{task_name}"
        log(f"sweep {recipe} {axis}={value}: training into {display_path(weights)}")
        if weights.exists():  # a point that did not finish: start it again
            import shutil

            shutil.rmtree(weights)
        card = train(recipe, task_name, weights, base=base, seed=seed, overrides=_overrides(axis, value, n_layers),
                     limit=limit, device=device, evaluate_test=False, card_dir=None, score_train=True)
        test = evaluate_with_lmms(task_name, base, weights, seed).summary
        points[value] = {
            "value": value, "overrides": card["overrides"], "params": card["params"],
            "train": card["train_scores"].get(headline), "held_out": card["validation"].get(headline),
            "test": {k: test[k] for k in ("value", "ci95", "n", "scores")},
            "training": card["training"], "adapter_hash": card["adapter_hash"], "weights": card["weights"]}
        base_test = base_test or {k: v for k, v in evaluate_with_lmms(task_name, base, None, seed).summary.items()
                                  if k in ("value", "ci95", "n", "scores")}
        _write(path, header, base_test, points)
    if not path.is_file():  # every value was already done
        _write(path, header, base_test, points)
    return path


def _write(path: Path, header: dict, base_test: dict | None, points: dict[int, dict]) -> None:
    import peft
    import torch
    import transformers

    doc = {**header, "base_test": base_test, "points": [points[v] for v in sorted(points)],
           "command": f"vlm-peft-bench sweep --recipe {header['recipe']} --task {header['task']} --base "
                      f"{header['base']} --seed {header['seed']} --{header['axis'].replace('_', '-')} "
                      + ",".join(str(v) for v in sorted(points)),
           "versions": {"vlm-peft-bench": __version__, "torch": torch.__version__.split("+")[0],
                        "transformers": transformers.__version__, "peft": peft.__version__}}
    write_files(path.parent, {path.name: (json.dumps(doc, indent=2) + "\n").encode()})
