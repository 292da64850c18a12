"""Training examples from an lmms-eval task's training split: prompt, image, target; 80/20 train/validation."""

from __future__ import annotations

import random
from dataclasses import dataclass

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.paths import tasks_dir


@dataclass
class Example:
    doc: dict
    text: str  # the task's prompt for this doc (doc_to_text), without chat markup
    target: str  # what the model should answer (doc_to_target)
    image: object | None


def load_task(name: str):
    """The lmms-eval task object for one of our tasks (or any task lmms-eval knows)."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager("ERROR", include_path=[str(tasks_dir())])
    if name not in manager.all_tasks:
        raise AdapterError(f"unknown task {name!r}")
    return get_task_dict([name], manager)[name]


def task_examples(task, split: str | None = None) -> list[Example]:
    split = split or task.config.training_split
    if not split or split not in task.dataset:
        raise AdapterError(f"task {task.config.task} has no training split to train on")
    out = []
    for doc in task.dataset[split]:
        visuals = task.doc_to_visual(doc) or []
        target = task.doc_to_target(doc)
        out.append(Example(doc, task.doc_to_text(doc), str(target), visuals[0] if visuals else None))
    return out


def parse_where(text: str) -> tuple[str, str]:
    """`FIELD=VALUE` (the --where argument) as (field, value)."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip() or not value.strip():
        raise AdapterError(f"--where {text!r}: expected FIELD=VALUE, e.g. type=2D")
    return field.strip(), value.strip()


def subset(examples: list[Example], field: str, value: str, task_name: str) -> list[Example]:
    """The examples whose doc field `field` reads `value` (compared as text); a clear error when none do."""
    if examples and field not in examples[0].doc:
        raise AdapterError(f"--where {field}={value}: task {task_name}'s items have no field {field!r} (they have "
                           f"{', '.join(sorted(examples[0].doc))})")
    kept = [e for e in examples if str(e.doc.get(field)) == value]
    if not kept:
        seen = sorted({str(e.doc.get(field)) for e in examples})
        raise AdapterError(f"--where {field}={value}: no training item of {task_name} has it; {field} takes "
                           f"{', '.join(seen[:20])}{' ...' if len(seen) > 20 else ''}")
    return kept


def split_train_validation(examples: list, seed: int, validation_fraction: float = 0.2) -> tuple[list, list]:
    """A seeded shuffle, then the first 80% to train on and the last 20% to validate on (as the paper)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = int(round(len(order) * validation_fraction))
    train = [examples[i] for i in order[: len(order) - n_val]]
    val = [examples[i] for i in order[len(order) - n_val:]]
    return train, val
