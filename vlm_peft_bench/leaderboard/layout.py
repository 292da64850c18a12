"""What a results file must hold for the leaderboard to read it, checked before anything is read from it.

Results files: the layout lmms-eval 0.7 writes (shared with lm-evaluation-harness 0.4): an object with
`results` (task -> {"metric,filter": score}), `configs` (task -> settings) and `config` (the run), and
optionally `versions`, `n-shot`, `n-samples`, `task_hashes`, as objects. Anything else (a list, an older
harness layout whose metrics carry no filter, a key of the wrong type) is named field by field.

The `vlm_peft_bench` provenance block our `lmms_eval` command adds: optional (plain lmms-eval, and runs stopped
before the block was written, have none: hashes are then unknown and the builder says so in a note). Its
`schema_version` is 1 when absent: every block written so far (pretrained, model_hash, prompt_template,
versions; adapter and notes since they exist) is version 1, and later additions within version 1 (such as
`failures`, `params`, `adapter.method` and `per_item`) are only ever new keys: the reader ignores those it does
not use and checks those it reads (`params`: the evaluated model's {trainable, total, fraction}, or
{"unknown": reason}; the leaderboard takes a row's parameter counts from it; `per_item`: {task: {metric:
{item id: number}}}, the per-image SPICE scores its interval is drawn from). A version it does not know is refused.
"""

from __future__ import annotations

from vlm_peft_bench.leaderboard.readfile import kind_of
from vlm_peft_bench.provenance import SCHEMA_VERSION as PROVENANCE_VERSION  # the writer's; one number

REQUIRED = {"results": "task scores", "configs": "per-task settings", "config": "run settings"}
OPTIONAL_OBJECTS = ("versions", "n-shot", "n-samples", "task_hashes")
RERUN_LMMS = ("re-run the evaluation with `lmms_eval --model vlreft ... --log_samples --output_path DIR`, or "
              "remove the file")
UPGRADE = "upgrade vlm-peft-bench to the version that wrote it, or remove the file"


def _type_problem(where: str, value, expected: tuple[type, ...], meaning: str) -> list[str]:
    if isinstance(value, expected) and not isinstance(value, bool) or value is None and type(None) in expected:
        return []
    return [f"'{where}' is {kind_of(value)}, expected {meaning}"]


def _harness_without_filters(data: dict) -> bool:
    """lm-evaluation-harness before 0.4: no `configs`, metrics named 'acc' rather than 'acc,none'."""
    results = data.get("results")
    if "configs" in data or not isinstance(results, dict) or not results:
        return False
    return all(isinstance(s, dict) and s and not any("," in k for k in s) for s in results.values())


def results_problems(data) -> list[str]:
    """What keeps `data` (a parsed results file) from being read, one entry per field; [] when it is fine."""
    if not isinstance(data, dict):
        return [f"holds {kind_of(data)}, not an lmms-eval results object (one with 'results', 'configs' and "
                "'config')"]
    if _harness_without_filters(data):
        return ["an lm-evaluation-harness results file from before 0.4 (no 'configs'; metrics named like 'acc' "
                "rather than 'acc,none'), not lmms-eval's layout"]
    missing = [f"'{k}' ({meaning})" for k, meaning in REQUIRED.items() if k not in data]
    if missing:
        return ["not an lmms-eval results file: no " + ", ".join(missing)]
    problems = []
    for key in REQUIRED:
        problems += _type_problem(key, data[key], (dict,), "an object")
    for key in OPTIONAL_OBJECTS:
        problems += _type_problem(key, data.get(key), (dict, type(None)), "an object")
    if problems:
        return problems
    results, configs, run = data["results"], data["configs"], data["config"]
    problems += _type_problem("config.model_args", run.get("model_args"), (str, dict, type(None)), "a string")
    scored = [t for t in sorted(results) if t in configs]
    if not scored:
        return problems + ["'results' holds no task described in 'configs' (no task was scored)" if results
                           else "'results' is empty (no task was scored)"]
    for task in scored:
        problems += _task_problems(task, data)
    return problems + provenance_problems(data.get("vlm_peft_bench"))


def _task_problems(task: str, data: dict) -> list[str]:
    scores, config = data["results"][task], data["configs"][task]
    problems = _type_problem(f"results.{task}", scores, (dict,), "an object (metric -> score)")
    problems += _type_problem(f"configs.{task}", config, (dict,), "an object (the task's settings)")
    if problems:
        return problems
    metrics = [k for k in scores if k not in ("alias", "name", "samples")]
    if metrics and not any("," in k for k in metrics):
        problems.append(f"'results.{task}' names its metrics without a filter (e.g. 'acc' rather than 'acc,none'): "
                        "an older layout")
    for key in ("lmms_eval_specific_kwargs", "generation_kwargs", "dataset_kwargs"):
        problems += _type_problem(f"configs.{task}.{key}", config.get(key), (dict, type(None)), "an object")
    kwargs = config.get("lmms_eval_specific_kwargs") or {}
    if isinstance(kwargs, dict):
        problems += _type_problem(f"configs.{task}.lmms_eval_specific_kwargs.default", kwargs.get("default"),
                                  (dict, type(None)), "an object")
    counts = (data.get("n-samples") or {}).get(task)
    problems += _type_problem(f"n-samples.{task}", counts, (dict, type(None)), "an object")
    if isinstance(counts, dict):
        effective = counts.get("effective")
        problems += _type_problem(f"n-samples.{task}.effective", effective, (int, type(None)), "a whole number")
        if isinstance(effective, int) and effective < 0:
            problems.append(f"'n-samples.{task}.effective' is {effective}, expected a count")
    return problems


def provenance_version(block: dict):
    return block.get("schema_version", PROVENANCE_VERSION)


def provenance_problems(block) -> list[str]:
    """What keeps a `vlm_peft_bench` block from being read ([] for none at all: that is plain lmms-eval)."""
    if block is None:
        return []
    if not isinstance(block, dict):
        return [f"'vlm_peft_bench' (the provenance block) is {kind_of(block)}, expected an object"]
    version = provenance_version(block)
    if version != PROVENANCE_VERSION or isinstance(version, bool):
        return [f"'vlm_peft_bench.schema_version' is {version!r}: written by another version of vlm-peft-bench "
                f"(this one reads provenance version {PROVENANCE_VERSION})"]
    problems = []
    for key in ("pretrained", "model_hash"):
        if key not in block:
            problems.append(f"'vlm_peft_bench' (the provenance block) has no '{key}'")
    for key, meaning in (("pretrained", "a string"), ("model_hash", "a string"), ("prompt_template", "a string")):
        problems += _type_problem(f"vlm_peft_bench.{key}", block.get(key), (str, type(None)), meaning)
    for key in ("versions", "notes"):
        problems += _type_problem(f"vlm_peft_bench.{key}", block.get(key), (dict, type(None)), "an object")
    adapter = block.get("adapter")
    problems += _type_problem("vlm_peft_bench.adapter", adapter, (dict, type(None)), "an object")
    if isinstance(adapter, dict):
        for key in ("path", "sha256", "method"):
            problems += _type_problem(f"vlm_peft_bench.adapter.{key}", adapter.get(key), (str, type(None)),
                                      "a string")
    params = block.get("params")
    problems += _type_problem("vlm_peft_bench.params", params, (dict, type(None)), "an object")
    problems += _params_problems(params) if isinstance(params, dict) else []
    return problems + _per_item_problems(block.get("per_item"))


def _per_item_problems(per_item) -> list[str]:
    """Per-item scores of corpus metrics that are their mean: {task: {metric: {item id: number}}}."""
    problems = _type_problem("vlm_peft_bench.per_item", per_item, (dict, type(None)), "an object")
    for task, metrics in (per_item or {}).items() if isinstance(per_item, dict) else ():
        where = f"vlm_peft_bench.per_item.{task}"
        problems += _type_problem(where, metrics, (dict,), "an object (metric -> {item id: score})")
        for metric, values in metrics.items() if isinstance(metrics, dict) else ():
            problems += _type_problem(f"{where}.{metric}", values, (dict,), "an object (item id -> score)")
            if isinstance(values, dict):
                bad = [k for k, v in values.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
                if bad:
                    problems.append(f"'{where}.{metric}' has {len(bad)} item(s) whose score is not a number "
                                    f"(first: {bad[0]!r})")
    return problems


def _params_problems(params: dict) -> list[str]:
    """The evaluated model's parameter counts: {trainable, total, fraction}, or {"unknown": reason}."""
    if "unknown" in params:
        return _type_problem("vlm_peft_bench.params.unknown", params["unknown"], (str,), "a string (the reason)")
    problems = []
    for key, meaning in (("trainable", "a whole number >= 0"), ("total", "a whole number > 0"),
                         ("fraction", "a number in [0, 1]")):
        value = params.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = number and (0 <= value <= 1 if key == "fraction" else isinstance(value, int) and value >= (key == "total"))
        if not ok:
            shown = repr(value) if number else "missing" if key not in params else kind_of(value)
            problems.append(f"'vlm_peft_bench.params.{key}' is {shown}, expected {meaning}")
    return problems


def is_version_problem(problem: str) -> bool:
    return problem.startswith("'vlm_peft_bench.schema_version'")
