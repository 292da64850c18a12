"""Shift vectors and contrastive vectors: per layer, a mean difference of hidden states, added back with alpha.

* Shift (`derive_shift`): the representation shift fine-tuning caused (after the "fine-tuning representation
  shift" line of work on steering multimodal models without training): the base and the adapted model read the
  same prompts (a task's training split); the vector of layer L is the mean over prompts and chosen positions of
  (adapted state - base state) at L's output.
* Contrast (`derive_contrast`): the mean state over one set of prompts minus the mean over another (for example
  short vs. long answers, one caption style vs. another), both through the base model.

Either is saved with strength alpha (`folder.py`) and applied at the same positions of each prompt (pyreft's
notation; `all` for every prompt token), optionally on every generated token too (`intervene_on="all"`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonlines
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.reft_folder import language_model
from vlm_peft_bench.methods.recipe import select_layers
from vlm_peft_bench.steering.folder import save_steering
from vlm_peft_bench.steering.states import prompt_states


@dataclass
class Prompt:
    text: str
    image: object | None  # a PIL image, or None


def runner_for(base: str, device: str, adapter: str | None = None):
    from vlm_peft_bench.methods.attach import attach_adapter
    from vlm_peft_bench.nanollava.loading import load_nanollava
    from vlm_peft_bench.runner import Runner

    loaded = load_nanollava(base, device, "float32")
    attached = attach_adapter(loaded.model, adapter) if adapter else None
    model = attached.model if attached else loaded.model
    return Runner(model.eval(), loaded.processor, loaded.model.device, attached), attached


def prompts_sha256(prompts: Sequence[Prompt]) -> str:
    """A hash of the prompts' texts and images (pixels), recorded with the vectors."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps(p.text).encode())
        if p.image is not None:
            digest.update(f"{p.image.mode}{p.image.size}".encode() + p.image.tobytes())
    return digest.hexdigest()


def task_prompts(task: str, limit: int | None = None) -> tuple[list[Prompt], str]:
    """The prompts (text, image) of a task's training split (lmms-eval's own `doc_to_text` / `doc_to_visual`)."""
    from vlm_peft_bench.train.data import load_task, task_examples

    loaded = load_task(task)
    examples = task_examples(loaded)
    if limit is not None:
        examples = examples[:limit]
    return [Prompt(e.text, e.image) for e in examples], loaded.config.training_split


def read_prompt_file(path: Path | str) -> list[Prompt]:
    """A JSON Lines file of {"text": ..., "image": optional path, relative to the file}."""
    path = Path(path)
    prompts = []
    try:
        with jsonlines.open(path) as reader:
            for number, row in enumerate(reader, 1):
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise AdapterError(f"{path}: line {number}: expected an object with a \"text\" string")
                image = None
                if row.get("image"):
                    image_path = path.parent / str(row["image"])
                    try:
                        with Image.open(image_path) as opened:
                            image = opened.convert("RGB")
                    except OSError as err:
                        raise AdapterError(f"{path}: line {number}: image {image_path}: {err}") from err
                prompts.append(Prompt(row["text"], image))
    except FileNotFoundError as err:
        raise AdapterError(f"prompt file {path} does not exist") from err
    except jsonlines.InvalidLineError as err:
        raise AdapterError(f"{path}: line {err.lineno}: not valid JSON") from err
    if not prompts:
        raise AdapterError(f"{path}: no prompts")
    return prompts


def _check(positions: str, alpha: float) -> None:
    parse_positions(positions)
    if alpha == 0 or alpha != alpha:
        raise AdapterError(f"alpha={alpha}: a non-zero number is needed")


def derive_shift(base: str, adapter: str, task: str, out: Path | str, layers="all", positions: str = "all",
                 alpha: float = 1.0, limit: int | None = None, batch_size: int = 8, device: str = "cpu",
                 intervene_on: str = "prompt", seed: int = 0) -> Path:
    """The adapter's mean representation shift over `task`'s training prompts, saved as a `shift` folder."""
    _check(positions, alpha)
    prompts, split = task_prompts(task, limit)
    texts, images = [p.text for p in prompts], [p.image for p in prompts]
    base_runner, _ = runner_for(base, device)
    chosen = select_layers(layers, layer_count(base_runner.model))
    base_states = prompt_states(base_runner, texts, images, chosen, positions, batch_size, "base states").means()
    del base_runner
    adapted_runner, attached = runner_for(base, device, adapter)
    adapted = prompt_states(adapted_runner, texts, images, chosen, positions, batch_size, "adapted states").means()
    shift = adapted - base_states
    record = {"kind": "shift", "strength": float(alpha), "base": base, "seed": seed,
              "parents": {"adapter": str(adapter), "adapter_sha256": attached.sha256, "method": attached.method},
              "data": {"task": task, "split": split, "items": len(prompts), "inputs_sha256": prompts_sha256(prompts)},
              "positions": positions}
    return save_steering(out, dict(zip(chosen, shift)), record, positions, intervene_on)


def derive_contrast(base: str, positive: Path | str, negative: Path | str, out: Path | str, layers="all",
                    positions: str = "all", alpha: float = 1.0, batch_size: int = 8, device: str = "cpu",
                    intervene_on: str = "prompt", seed: int = 0) -> Path:
    """Mean state over the `positive` prompts minus the mean over the `negative` ones, saved as a `contrast`
    folder."""
    _check(positions, alpha)
    sets = {"positive": read_prompt_file(positive), "negative": read_prompt_file(negative)}
    runner, _ = runner_for(base, device)
    chosen = select_layers(layers, layer_count(runner.model))
    means = {name: prompt_states(runner, [p.text for p in ps], [p.image for p in ps], chosen, positions,
                                 batch_size, f"{name} states").means() for name, ps in sets.items()}
    record = {"kind": "contrast", "strength": float(alpha), "base": base, "seed": seed, "positions": positions,
              "data": {name: {"file": str(path), "items": len(sets[name]), "inputs_sha256": prompts_sha256(sets[name])}
                       for name, path in (("positive", positive), ("negative", negative))}}
    return save_steering(out, dict(zip(chosen, means["positive"] - means["negative"])), record, positions,
                         intervene_on)


def layer_count(model) -> int:
    return len(language_model(model).layers)
