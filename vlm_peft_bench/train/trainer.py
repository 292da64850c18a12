"""`vlm-peft-bench train`: train a recipe on a task's training split, validate, save, evaluate, write a card.

The adapter is trained through the same code that evaluates it (the same processor, prompt and ReFT hooks),
saved in its library's own format, scored on the task's test split by lmms-eval itself (`vlreft` with
`adapter=`), and described by a YAML card in `adapters_zoo/`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.errors import OutFolderError
from vlm_peft_bench.methods.attach import adapter_file_hashes
from vlm_peft_bench.methods.base import TrainingStage
from vlm_peft_bench.methods.params import account
from vlm_peft_bench.methods.recipe import Recipe, load_recipe
from vlm_peft_bench.methods.registry import family
from vlm_peft_bench.methods.table import method_table, recognise
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.nanollava.provenance import model_provenance
from vlm_peft_bench.paths import display_path, zoo_dir
from vlm_peft_bench.provenance import combined_hash
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.train.cards import evaluate_card, write_card
from vlm_peft_bench.train.data import load_task, parse_where, split_train_validation, subset, task_examples

IGNORE = -100


def check_out_folder(out: Path, method: str) -> None:
    """Refuse, before any training, a folder that already holds an adapter of another format: its files would
    stay beside the new ones and the folder would load as the old adapter."""
    if not out.is_dir():
        return
    try:
        found = recognise(out).format
    except AdapterError:
        return
    writes = method_table()[method].format
    if found != writes:
        raise OutFolderError(f"--out {out}: the folder already holds a {found} adapter, and a {method} recipe "
                             f"writes a {writes} one; choose another --out or delete the folder")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_batch(processor, examples, device) -> tuple[dict, list[int]]:
    """Prompt + target + <|im_end|>, left-padded, with the loss on the target tokens only."""
    prompts = [processor.prompt(e.text, e.image is not None) for e in examples]
    prompt_ids = processor.encode(prompts)
    targets = processor.tokenizer([e.target + processor.tokenizer.eos_token for e in examples],
                                  add_special_tokens=False)["input_ids"]
    full = [p + t for p, t in zip(prompt_ids, targets)]
    batch = processor.pad_left(full)
    labels = batch["input_ids"].clone()
    width = labels.shape[1]
    for row, (p, f) in enumerate(zip(prompt_ids, full)):
        labels[row, : width - len(f) + len(p)] = IGNORE
    batch["labels"] = labels
    images = [e.image for e in examples if e.image is not None]
    if images:
        batch["pixel_values"] = processor.pixel_values(images)
    return batch.to(device), [len(p) for p in prompt_ids]


@torch.no_grad()
def predict(stage: TrainingStage, processor, task, examples, device, batch_size: int = 16) -> list[str]:
    """Validation answers through the runner `vlreft` uses, with the task's own generation settings (stop strings,
    new-token limit), so that a card's validation scores come from the code that evaluates."""
    stage.model.eval()
    attached = stage.attached()
    runner = Runner(attached.model, processor, torch.device(device), attached)
    settings = dict(task.config.generation_kwargs or {})
    until = settings.pop("until", None) or []
    until = [until] if isinstance(until, str) else list(until)
    texts = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        inputs, lengths = runner.inputs([e.text for e in chunk], [e.image for e in chunk])
        texts += runner.generate(inputs, lengths, dict(settings), until)
    stage.model.train()
    return texts


def task_scores(task, examples, texts) -> dict[str, float]:
    """The task's own per-item scoring and aggregation, on our predictions."""
    per_metric: dict[str, list] = {}
    for example, text in zip(examples, texts):
        for metric, value in task.process_results(example.doc, [text]).items():
            per_metric.setdefault(metric, []).append(value)
    aggregations = task.aggregation()
    return {m: float(aggregations[m](values)) for m, values in per_metric.items()}


def _fit(method: TrainingStage, train_set, processor, settings: dict, accelerator, device: str, seed: int,
         desc: str, checkpoints: Path | None = None) -> list[float]:
    """One training stage: AdamW with linear decay over the stage's steps, each process on its data shard.

    With several epochs, the adapter is saved after each one under `checkpoints/epoch-<n>`.
    """
    model = method.model
    model.train()
    optimizer = torch.optim.AdamW(method.param_groups, lr=float(settings["lr"]))
    batch_size = int(settings.get("batch_size", 1))
    epochs = int(settings.get("epochs", 1))
    world, rank = accelerator.num_processes, accelerator.process_index
    steps = epochs * math.ceil(len(train_set) / (batch_size * world))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / max(1, steps)))
    # Several processes (accelerate launch on GPUs; torchrun + ACCELERATE_USE_CPU on CPUs): DDP keeps the trainable
    # weights in step; each takes its shard.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    order_rng = random.Random(seed)
    losses = []
    bar = tqdm(total=steps, desc=desc, disable=not accelerator.is_main_process)
    for epoch in range(1, epochs + 1):
        order = list(range(len(train_set)))
        order_rng.shuffle(order)
        order = order[rank::world][: steps // epochs * batch_size]
        for start in range(0, len(order), batch_size):
            batch, lengths = make_batch(processor, [train_set[i] for i in order[start:start + batch_size]], device)
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(next(model.parameters()).dtype)
            with method.forward_context(batch["attention_mask"], lengths), accelerator.autocast():
                loss = wrapped(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()}; lower the learning rate")
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(1)
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if checkpoints is not None and epoch < epochs and accelerator.is_main_process:
            (checkpoints / f"epoch-{epoch}").mkdir(parents=True, exist_ok=True)
            method.save(checkpoints / f"epoch-{epoch}")
    bar.close()
    return losses


def train(recipe_name: str, task_name: str, out: Path | str, base: str = "nanollava-tiny", seed: int = 0,
          overrides: dict | None = None, limit: int | None = None, device: str | None = None,
          evaluate_test: bool = True, card_dir: Path | str | None = "zoo", name_out: bool = False,
          score_train: bool = False) -> dict:
    """Train, validate, save to `out` (or, with `name_out`, to adapters_zoo/weights/<card id>), evaluate.
    The card goes to `card_dir` (default "zoo": `paths.zoo_dir()`; None: no card). With `score_train`, the card
    also holds `train_scores`: the scores on a seeded sample of the items trained on, as many as were held out
    (the sweeps plot training against held-out accuracy)."""
    card_dir = zoo_dir() if card_dir == "zoo" else card_dir
    out, card_dir = Path(out), (Path(card_dir) if card_dir is not None else None)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides.get("where"):  # a malformed --where fails before anything is loaded
        overrides["where"] = "=".join(parse_where(overrides["where"]))
    recipe = load_recipe(recipe_name)
    method_family = family(recipe.method)
    recipe = method_family.with_overrides(recipe, overrides)
    if name_out:
        out = zoo_dir() / "weights" / f"{recipe.name}{_suffix(overrides)}__{base}__{task_name}"
    check_out_folder(out, recipe.method)
    settings = _settings(recipe, overrides)
    seed_everything(seed)
    from accelerate import Accelerator

    wants_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    bf16 = not wants_cpu and torch.cuda.is_bf16_supported()
    accelerator = Accelerator(cpu=wants_cpu, mixed_precision="bf16" if bf16 else "no")
    device = str(accelerator.device)
    loaded = load_nanollava(base, device=device, dtype="float32")
    processor = loaded.processor
    task = load_task(task_name)
    examples = task_examples(task)
    if overrides.get("where"):
        examples = subset(examples, *parse_where(overrides["where"]), task_name)
    train_set, val_set = split_train_validation(examples, seed)
    if limit:
        train_set, val_set = train_set[:limit], val_set[: max(1, limit // 4)]
    losses, started = [], time.time()
    method = None
    stages = method_family.prepare(recipe, loaded.model)
    for number, stage in enumerate(stages, 1):
        method = stage if isinstance(stage, TrainingStage) else stage()  # later stages are built when they start
        stage_note = f" (stage {number})" if len(stages) > 1 else ""
        desc = f"train {recipe.name} on {task_name}{stage_note}"
        checkpoints = out / "checkpoints" / (f"stage-{number}" if stage_note else "")
        losses += _fit(method, train_set, processor, settings, accelerator, device, seed, desc, checkpoints)
    train_seconds = time.time() - started
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:  # the main process validates, saves, evaluates and writes the card
        return {}
    validation = task_scores(task, val_set, predict(method, processor, task, val_set, device))
    if score_train:
        seen = random.Random(seed).sample(train_set, min(len(val_set), len(train_set)))
        train_scores = task_scores(task, seen, predict(method, processor, task, seen, device))
    out.mkdir(parents=True, exist_ok=True)
    method.save(out)
    card = build_card(recipe, task_name, base, seed, overrides, settings, out, losses, train_seconds, validation,
                      len(train_set), len(val_set), device)
    if score_train:
        card["train_scores"] = {k: round(v, 4) for k, v in train_scores.items() if math.isfinite(v)}
        card["task"]["train_scored"] = f"a seeded sample of {len(seen)} of the items trained on"
    evaluations = evaluate_card(card, task_name, base, out, seed) if evaluate_test else {}
    if card_dir is not None:
        write_card(card, card_dir, evaluations)
    return card


def build_card(recipe, task_name, base, seed, overrides, settings, out, losses, seconds, validation, n_train,
               n_val, device) -> dict:
    params = account(base, recipe=recipe)
    base_info = model_provenance(base)
    card_id = f"{recipe.name}{_suffix(overrides)}__{base}__{task_name}"
    split = f"training split where {overrides['where']}" if overrides.get("where") else "training split"
    return {
        "id": card_id,
        "recipe": recipe.name,
        "method": recipe.method,
        "overrides": overrides or {},
        "base": {"name": base, "hash": base_info["model_hash"]},
        "task": {"name": task_name, "train": f"{split}, seeded 80% ({n_train} items)",
                 "validation": f"{split}, seeded 20% ({n_val} items)", "test": "test split"},
        "params": {k: params[k] for k in ("trainable", "total", "fraction", "percent")},
        "seed": seed,
        "training": {"seconds": round(seconds, 1), "steps": len(losses), "device": device,
                     "final_loss_mean_last_50": round(float(np.mean(losses[-50:])), 4) if losses else None,
                     **{k: settings[k] for k in ("lr", "epochs", "batch_size", "weight_decay") if k in settings}},
        # a score a subset cannot define (CV-Bench's combined score of 2D items only) is left out, not NaN
        "validation": {k: round(v, 4) for k, v in validation.items() if math.isfinite(v)},
        "files_sha256": (files := adapter_file_hashes(out)),
        "adapter_hash": combined_hash(files),
        "license": "Apache-2.0",
        "weights": display_path(out),
        "versions": base_info["versions"],
    }


def _suffix(overrides: dict) -> str:
    named = {"intervene_on": "on"}  # short names in card ids
    suffix = "".join(f"-{named.get(k, k)}{v}" for k, v in sorted(overrides.items())
                     if k in ("rank", "layers", "positions", "intervene_on"))
    if overrides.get("where"):  # type=2D -> -type2D
        suffix += "-" + re.sub(r"[^A-Za-z0-9_.]+", "", overrides["where"].replace("=", ""))
    return suffix


def _settings(recipe: Recipe, overrides: dict) -> dict:
    """The training settings the recipe file gives (and only those: the card records them), with --lr / --epochs."""
    settings = {k: v for k, v in dataclasses.asdict(recipe.train).items() if k in recipe.train_keys}
    return dict(settings, **{k: overrides[k] for k in ("lr", "epochs") if k in overrides})
