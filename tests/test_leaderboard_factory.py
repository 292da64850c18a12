"""Synthetic lmms-eval results files, sample logs and adapter cards for the leaderboard tests (no model runs;
this module holds helpers only, no tests)."""

import json
import random
from pathlib import Path

import yaml

from vlm_peft_bench.scoring.cvbench import cvbench_scores

TEMPLATE = "<|im_start|>user\n<image>\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
BASE_HASH = "b" * 64
POST = "\nAnswer with the option's letter from the given choices directly."
SOURCES = (("ADE20K", "Count", "2D"), ("COCO", "Relation", "2D"), ("Omni3D", "Depth", "3D"))
VERSIONS = {"vlm-peft-bench": "0.1.0", "lmms-eval": "0.7.3", "torch": "2.14.1"}


def adapter_sha(name: str) -> str:
    return (name.encode().hex() * 64)[:64]


def cvbench_records(n: int, accuracy: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        source, task, kind = SOURCES[i % 3]
        out.append({"idx": i, "source": source, "task": task, "type": kind, "answer": "(A)", "response": "A",
                    "parsed": "A", "rule": "mc-letter-v1", "correct": rng.random() < accuracy})
    return out


def write_run(folder: Path, stamp: str, task: str = "cvbench_mini", adapter: str | None = None,
              accuracy: float = 0.5, seed: int = 0, n: int = 60, version: float = 1.0, template: str = TEMPLATE,
              base_hash: str = BASE_HASH, post_prompt: str = POST, samples: bool = True, limit=None,
              inputs_salt: str = "", spice: list[float] | None = None) -> Path:
    """One lmms-eval-shaped results file (+ sample log) for `task`; returns the results file. Captions: SPICE
    unavailable, or `spice`'s per-image scores (their mean the score, recorded as our `lmms_eval` records them)."""
    folder = Path(folder) / "nanollava-tiny"
    folder.mkdir(parents=True, exist_ok=True)
    logged = []
    if task.startswith("cvbench"):
        records = cvbench_records(n, accuracy, seed)
        s = cvbench_scores(records)
        scores = {"cvbench_combined": s["combined"], "cvbench_2d": s["2d"], "cvbench_3d": s["3d"],
                  "accuracy": s["accuracy"]}
        logged = [{"cvbench_combined": r, "cvbench_2d": r, "accuracy": r} for r in records]
    elif task.startswith("vqa_v2"):
        rng = random.Random(seed)
        values = [rng.choice([0.0, 0.3, 0.6, 1.0]) if rng.random() < accuracy * 1.5 else 0.0 for _ in range(n)]
        scores = {"vqa_accuracy": sum(values) / n, "vqa_accuracy_yes_no": float("nan")}
        logged = [{"vqa_accuracy": v, "vqa_accuracy_other": {"accuracy": v}} for v in values]
    else:  # captions: corpus metrics, SPICE unavailable
        scores = {"Bleu_4": 0.1 * accuracy, "METEOR": 0.2, "ROUGE_L": 0.4, "CIDEr": accuracy,
                  "SPICE": "SPICE unavailable: Stanford CoreNLP 3.6.0 not found (see docs/tasks.md: SPICE)"}
        logged = [{"CIDEr": {"id": str(i)}} for i in range(n)]
        if spice is not None:
            scores["SPICE"] = sum(spice) / len(spice)
    model_args = "pretrained=nanollava-tiny" + (f",adapter=zoo/weights/{adapter}" if adapter else "")
    block = {"pretrained": "nanollava-tiny", "model_folder": "/somewhere/nanollava-tiny", "model_hash": base_hash,
             "prompt_template": template, "versions": VERSIONS}
    if adapter:
        block["adapter"] = {"path": f"zoo/weights/{adapter}", "sha256": adapter_sha(adapter), "merge_lora": False}
    if spice is not None and task.startswith("coco"):
        block["per_item"] = {task: {"SPICE": {str(i): v for i, v in enumerate(spice)}}}
    data = {
        "results": {task: {"alias": task, **{f"{k},none": v for k, v in scores.items()},
                           **{f"{k}_stderr,none": "N/A" for k in scores}}},
        "configs": {task: {"task": task, "test_split": "test", "dataset_path": "parquet",
                           "dataset_kwargs": {"data_files": {"test": "/abs/path/mini/test.parquet"}},
                           "generation_kwargs": {"until": ["<|im_end|>"], "max_new_tokens": 16},
                           "lmms_eval_specific_kwargs": {"default": {"pre_prompt": "", "post_prompt": POST},
                                                         "pre_prompt": "", "post_prompt": post_prompt},
                           "metadata": {"version": version}}},
        "versions": {task: version}, "n-shot": {task: 0}, "n-samples": {task: {"original": n, "effective": n}},
        "config": {"model": "vlreft", "model_args": model_args, "limit": limit, "offset": 0, "random_seed": 0,
                   "numpy_seed": 1234, "torch_seed": 1234, "fewshot_seed": 1234},
        "date": stamp, "task_hashes": {task: "7" * 64}, "lmms_eval_version": "0.7.3", "vlm_peft_bench": block,
    }
    results = folder / f"{stamp}_results.json"
    results.write_text(json.dumps(data, indent=2))
    if samples:
        with open(folder / f"{stamp}_samples_{task}.jsonl", "w") as f:
            for i, entry in enumerate(logged):
                f.write(json.dumps({"doc_id": i, "target": "A", "input": f"question {i}{inputs_salt}", **entry}) + "\n")
    return results


def write_card(zoo: Path, adapter: str, method: str, trainable: int, total: int = 1_926_912,
               base_hash: str = BASE_HASH) -> Path:
    zoo.mkdir(parents=True, exist_ok=True)
    card = {"id": adapter, "recipe": adapter, "method": method, "base": {"name": "nanollava-tiny", "hash": base_hash},
            "params": {"trainable": trainable, "total": total, "fraction": trainable / total,
                       "percent": round(100 * trainable / total, 6)},
            "seed": 0, "adapter_hash": adapter_sha(adapter), "weights": f"zoo/weights/{adapter}"}
    path = zoo / f"{adapter}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


ADAPTERS = {"reft-r4": ("reft", 4_112, 0.62), "lora-r8": ("lora", 32_768, 0.60), "prefix-16": ("prefix", 16_384, 0.30),
            "full-ft": ("full", 1_100_672, 0.66)}


def standard_inputs(root: Path, tasks=("cvbench_mini",)) -> tuple[Path, Path]:
    """A results folder with the base and four adapters on `tasks`, and a zoo with their cards."""
    results, zoo = root / "results", root / "zoo"
    for task_index, task in enumerate(tasks):
        write_run(results / "base", f"20260101_00000{task_index}", task=task, accuracy=0.35, seed=1)
        for index, (name, (_, _, accuracy)) in enumerate(ADAPTERS.items()):
            write_run(results / name, f"2026010{index + 2}_00000{task_index}", task=task, adapter=name,
                      accuracy=accuracy, seed=index + 2)
    for name, (method, trainable, _) in ADAPTERS.items():
        write_card(zoo, name, method, trainable)
    return results, zoo
