"""The configurations and how each runs: our model path (`DirectRunner`, the `Runner` vlreft uses) bare or with
an adapter, or lmms-eval's `llava_hf` (`LlavaHfRunner`) on the same weights."""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import silent_tqdm, write_llava_hf_files
from benchmarks.gpu.adapters import make_adapter
from benchmarks.gpu.model import Request, tensor_bytes

TASK, SPLIT = "gpu_bench", "test"


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # vlreft | llava_hf | reft | lora
    batch_size: int
    needs: tuple[str, ...] = ()  # modules that must import, else the configuration is skipped
    merge: bool = False
    one_token: bool = False  # prefill only: generate a single token


CONFIGS = [
    Config("vlreft_bs1", "vlreft", 1),
    Config("llava_hf_bs1", "llava_hf", 1, ("lmms_eval.models.simple.llava_hf",)),
    Config("reft_bs1", "reft", 1),
    Config("lora_unmerged_bs1", "lora", 1, ("peft",)),
    Config("lora_merged_bs1", "lora", 1, ("peft",), merge=True),
    Config("vlreft_bs8", "vlreft", 8),
    Config("vlreft_bs1_prefill", "vlreft", 1, one_token=True),
    Config("vlreft_bs8_prefill", "vlreft", 8, one_token=True),
]


@dataclass
class PassResult:
    texts: list[str]
    ids: list[list[int]] | None  # new token ids per request (None where the path gives only text)
    generate_s: float | None  # seconds inside model.generate (None for llava_hf: not separable)
    prompt_tokens: list[int] | None = None


@dataclass
class Setup:
    """What every configuration is built from: the random base, where it runs, and the adapters' recipes."""

    base: Any
    processor: Any
    config: Any  # the base's LlavaConfig
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    sync: Callable[[], None]
    new_tokens: int
    seed: int
    tmp: Path  # a temporary folder for saved adapters and llava_hf's copy of the model
    recipes: dict[str, dict]  # configuration kind (reft, lora): recipe
    adapters: dict[str, Path] = field(default_factory=dict)  # kind: saved folder, made once


class DirectRunner:
    """vlreft's path without lmms-eval (which the GPU image may lack): requests sorted by prompt length (longest
    first, the order lmms-eval's Collator gives vlreft), batched, then the `Runner` vlreft runs every batch
    through (inputs, ReFT interventions on the prompt forward, `generate`), decode, original order back."""

    def __init__(self, model, processor, device, batch_size: int, new_tokens: int, adapter=None, sync=None):
        from vlm_peft_bench.runner import Runner

        self.generator = Runner(model, processor, device, adapter)
        self.batch_size, self.new_tokens = batch_size, new_tokens
        self.sync = sync or (lambda: None)

    def run(self, requests: list[Request]) -> PassResult:
        import torch

        generator, tokenizer = self.generator, self.generator.tokenizer
        order = sorted(range(len(requests)),
                       key=lambda i: (-len(tokenizer(requests[i].text)["input_ids"]), requests[i].text))
        texts: list[str | None] = [None] * len(requests)
        ids: list[list[int] | None] = [None] * len(requests)
        prompt_tokens: list[int] = [0] * len(requests)
        kwargs = generator.generate_kwargs({"max_new_tokens": self.new_tokens, "temperature": 0}, [])
        generate_s = 0.0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                inputs, lengths = generator.inputs([requests[i].text for i in rows], [requests[i].image for i in rows])
                self.sync()
                t0 = time.perf_counter()
                new = generator.new_tokens(inputs, lengths, kwargs)
                self.sync()
                generate_s += time.perf_counter() - t0
                new = new.tolist()
                decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
                for row, i in enumerate(rows):
                    ids[i], prompt_tokens[i], texts[i] = new[row], lengths[row], decoded[row]
        return PassResult(texts, ids, generate_s, prompt_tokens)


def _doc_to_visual(doc: dict) -> list:
    return [doc["image"]]


class LlavaHfRunner:
    """lmms-eval's `llava_hf` model answering generate_until Instances built here (no task, no datasets)."""

    def __init__(self, lm, new_tokens: int, sync=None):
        self.lm, self.new_tokens = lm, new_tokens
        self.sync = sync or (lambda: None)

    def run(self, requests: list[Request]) -> PassResult:
        from lmms_eval.api.instance import Instance

        self.lm.task_dict[TASK] = {SPLIT: [{"image": r.image} for r in requests]}
        instances = [  # fresh generation kwargs each pass: llava_hf writes into them
            Instance(request_type="generate_until", idx=0, metadata={"task": TASK, "doc_id": i, "repeats": 1},
                     arguments=(r.text, {"max_new_tokens": self.new_tokens, "temperature": 0, "num_beams": 1},
                                _doc_to_visual, i, TASK, SPLIT))
            for i, r in enumerate(requests)]
        texts = self.lm.generate_until(instances)
        self.sync()
        return PassResult(list(texts), None, None)


def write_llava_hf_folder(model, config, dest: Path) -> Path:
    """The random model saved with the files transformers' AutoProcessor needs for a LlavaProcessor: the tiny
    tokenizer with our ChatML prompt as chat template, SigLIP's image processor at the model's size, `<image>`
    expanded to one token per patch (as run.py's llava_hf_folder does for the tiny checkpoint)."""
    from vlm_peft_bench.nanollava.loading import TINY_DIR

    model.save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (TINY_DIR / name).is_file():
            shutil.copy2(TINY_DIR / name, dest / name)
    write_llava_hf_files(dest, config.vision_config.image_size, config.vision_config.patch_size)
    return dest


def adapter_folder(kind: str, setup: Setup) -> Path:
    """The saved adapter of configuration kind `kind` (reft, lora) for the base, made on first use."""
    if kind not in setup.adapters:
        setup.adapters[kind] = make_adapter(setup.recipes[kind], setup.base, setup.tmp / kind, setup.seed)
    return setup.adapters[kind]


def build_runner(cfg: Config, setup: Setup) -> tuple[Any, int]:
    """(runner, bytes of the configuration's own weights) for one configuration."""
    base, processor, device, sync = setup.base, setup.processor, setup.device, setup.sync
    new_tokens = 1 if cfg.one_token else setup.new_tokens
    if cfg.kind == "vlreft":
        return DirectRunner(base, processor, device, cfg.batch_size, new_tokens, sync=sync), tensor_bytes(base)
    if cfg.kind == "reft":
        from vlm_peft_bench.methods.attach import attach_adapter

        folder = adapter_folder("reft", setup)
        model = copy.deepcopy(base)  # its own copy: hooks on the shared base would slow the bare passes
        adapter = attach_adapter(model, str(folder))
        runner = DirectRunner(model, processor, device, cfg.batch_size, new_tokens, adapter=adapter, sync=sync)
        return runner, tensor_bytes(model, *adapter.reft.modules)
    if cfg.kind == "lora":
        from vlm_peft_bench.methods.attach import attach_adapter

        folder = adapter_folder("lora", setup)
        adapter = attach_adapter(copy.deepcopy(base), str(folder), merge_lora=cfg.merge)
        runner = DirectRunner(adapter.model, processor, device, cfg.batch_size, new_tokens, sync=sync)
        return runner, tensor_bytes(adapter.model)
    if cfg.kind == "llava_hf":
        import lmms_eval.models.simple.llava_hf as llava_hf_module

        llava_hf_module.tqdm = silent_tqdm  # its progress bar ignores TQDM_DISABLE and would swamp the table
        folder = write_llava_hf_folder(base, setup.config, setup.tmp / "llava-hf")
        device_name = "cuda:0" if device.type == "cuda" and device.index is None else str(device)
        lm = llava_hf_module.LlavaHf(pretrained=str(folder), device=device_name, device_map=device_name,
                                     dtype=str(setup.dtype).removeprefix("torch."), batch_size=cfg.batch_size)
        return LlavaHfRunner(lm, new_tokens, sync=sync), tensor_bytes(lm.model)
    raise ValueError(f"unknown configuration kind {cfg.kind!r}")
