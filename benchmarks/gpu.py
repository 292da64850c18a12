"""GPU benchmark of `vlreft`: the full-size nanoLLaVA architecture, random bf16 weights, one accelerator.

The measurements of `benchmarks/run.py` (the CPU suite, on the tiny checkpoint) at full size, plus generated and
prefill tokens per second against the card's peak:

    vlreft_bs1          our model path (VLReft.generate_until's, driven without lmms-eval), no adapter, batch 1
    llava_hf_bs1        lmms-eval's own `llava_hf` on the same weights (saved to a temporary folder); needs lmms-eval
    reft_bs1            + LoReFT (rank 4, f3+m3+l3, shared weights) on every decoder layer, as the zoo's
                        reft-r4-all, attached with our `attach_adapter` (pyreft not needed)
    lora_unmerged_bs1   + LoRA (r 8, q_proj and v_proj), as the zoo's lora-r8, unmerged; needs peft
    lora_merged_bs1     the same LoRA merged into the weights; needs peft
    vlreft_bs8          no adapter, batch 8
    vlreft_bs1_prefill, vlreft_bs8_prefill
                        vlreft_bs1 / bs8 generating one token: the prefill time, from which the decode time follows

A configuration whose library is missing is recorded as skipped, one that fails as failed, each with the reason;
the rest still run. Timed passes are interleaved (every repeat runs every configuration, in a rotated order) and
medians are taken; ratios and targets are run.py's. Peak memory per configuration: the bytes of its own weights plus
the most `torch.cuda.max_memory_allocated` rose above what was allocated before its pass (activations, KV cache,
inputs), i.e. the peak it would have alone on the card.

Random weights produce junk, so the work is fixed instead: the lm_head rows of special tokens and of ids the
tokenizer lacks are zeroed, so greedy decoding never picks them (a zero logit loses to the largest of ~600 random
ones) and every row generates exactly --new-tokens tokens in every configuration, llava_hf included (it takes no
min_new_tokens); the direct path checks it. The tokenizer is nanollava-tiny's: its 596 ids are all rows of the
151,936-row vocabulary, and the model's image token id is its `<image>`. The cost of the computation is the full
model's either way.

    bash benchmarks/gpu.sh [--quick] [--items 16] [--repeats 5] [--new-tokens 32] [--peak-tflops T] [--out PATH]
    bash benchmarks/gpu.sh --device cpu --size toy --quick      # the CPU smoke path the tests run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Importing run.py also sets its environment defaults (offline Hub and datasets, no tokenizer threads or tqdm).
from benchmarks.run import RATIOS, write_llava_hf_files  # noqa: E402  (same targets as the CPU suite; stdlib only)


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
AGREEMENT = {  # name: (config, config, compared on)
    "vlreft_vs_llava_hf": ("vlreft_bs1", "llava_hf_bs1", "text"),
    "vlreft_bs8_vs_bs1": ("vlreft_bs8", "vlreft_bs1", "ids"),
    "lora_merged_vs_unmerged": ("lora_merged_bs1", "lora_unmerged_bs1", "ids"),
}
REFT_RECIPE = {"rank": 4, "positions": "f3+m3+l3", "share_weights": True}  # the zoo's reft-r4-all
LORA_RECIPE = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}  # lora-r8
# (pattern on torch.cuda.get_device_name, dense bf16 TFLOP/s without sparsity, memory GB/s): vendor datasheets.
# First match wins. Unknown cards get no fraction of peak unless --peak-tflops / --peak-gbps say.
PEAKS = [
    (r"GH200", 989.0, None),  # HBM3 4.0 or HBM3e 4.9 TB/s depending on the model
    (r"H200 NVL", 835.0, 4800.0),
    (r"H200", 989.0, 4800.0),
    (r"H100 NVL", 835.0, 3900.0),
    (r"H100 PCIe", 756.0, 2000.0),
    (r"H100", 989.0, 3350.0),  # SXM5, "NVIDIA H100 80GB HBM3"
    (r"B200", 2250.0, 8000.0),
    (r"A100-SXM4-80GB", 312.0, 2039.0),
    (r"A100 80GB PCIe", 312.0, 1935.0),
    (r"A100", 312.0, 1555.0),  # 40 GB models
    (r"L40S", 362.0, 864.0),
    (r"\bL4\b", 121.0, 300.0),
    (r"\bA10\b", 125.0, 600.0),
    (r"RTX 4090", 165.0, 1008.0),
]
PROMPTS = [  # cvbench_mini-style questions of different lengths (batches pad)
    "How many red circles are in the image? Select from the following choices.\n(A) 2\n(B) 3\n(C) 4\n(D) 5",
    "Considering the relative positions of the blue square (annotated by the red box) and the green triangle "
    "(annotated by the blue box) in the image provided, where is the blue square located with respect to the green "
    "triangle? Select from the following choices.\n(A) left\n(B) right",
    "Which object is closer to the camera taking this photo, the yellow diamond (highlighted by a red box) or the red "
    "circle (highlighted by a blue box)? Select from the following choices.\n(A) yellow diamond\n(B) red circle",
    "Estimate the real-world distances between objects in this image. Which object is closer to the green square "
    "(highlighted by a red box), the blue circle (highlighted by a blue box) or the red triangle (highlighted by a "
    "green box)? Select from the following choices.\n(A) blue circle\n(B) red triangle",
]
TASK, SPLIT = "gpu_bench", "test"


@dataclass
class Request:
    text: str
    image: Any  # PIL.Image.Image


@dataclass
class PassResult:
    texts: list[str]
    ids: list[list[int]] | None  # new token ids per request (None where the path gives only text)
    generate_s: float | None  # seconds inside model.generate (None for llava_hf: not separable)
    prompt_tokens: list[int] | None = None


@dataclass
class Measured:
    config: Config
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    build_s: float | None = None
    weights_bytes: int | None = None
    runs_s: list[float] = field(default_factory=list)
    generate_runs_s: list[float] = field(default_factory=list)
    transient_bytes: int | None = None
    first: PassResult | None = None
    changed_between_repeats: bool = False


def _silence() -> None:
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    with contextlib.suppress(ImportError):
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")


def library_status(names: list[str]) -> dict[str, dict]:
    """Whether each module imports here, and its distribution's version (an import that raises counts as missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # a broken install is as missing as an absent one
            out[name] = {"available": False, "version": None, "error": f"{type(err).__name__}: {err}"}
            continue
        try:
            found = version(name.split(".")[0])
        except PackageNotFoundError:
            found = None
        out[name] = {"available": True, "version": found, "error": None}
    return out


def _silent_tqdm(*args, **kwargs):
    from tqdm import tqdm

    kwargs["disable"] = True
    return tqdm(*args, **kwargs)


def model_sizes(size: str) -> tuple[dict, dict]:
    """(text, vision) config dicts: nanoLLaVA's (`full`) or a toy at the tiny checkpoint's dimensions (`toy`)."""
    from vlm_peft_bench.nanollava.config import NANOLLAVA_TEXT, NANOLLAVA_VISION

    if size == "full":
        return dict(NANOLLAVA_TEXT), dict(NANOLLAVA_VISION)
    from vlm_peft_bench.nanollava.tiny import TINY_TEXT, TINY_VISION

    # more rows than the tokenizer has ids, as at full size, so that the zeroed-row path is exercised
    return dict(TINY_TEXT, vocab_size=4096), dict(TINY_VISION)


def build_base(size: str, device, dtype, seed: int):
    """Random-weight model (initialised on `device` directly, in `dtype`), its processor and config."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from vlm_peft_bench.nanollava.config import IMAGE_TOKEN, llava_config
    from vlm_peft_bench.nanollava.loading import TINY_DIR, load_tokenizer
    from vlm_peft_bench.nanollava.processing import NanoLlavaProcessor

    tokenizer = load_tokenizer(TINY_DIR)
    text, vision = model_sizes(size)
    config = llava_config(text, vision, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, torch_dtype=dtype)
    model.eval()
    never_special(model, tokenizer)
    return model, NanoLlavaProcessor(tokenizer, config), config


def never_special(model, tokenizer) -> None:
    """Zero the lm_head rows of special tokens and of ids the tokenizer lacks, so that greedy decoding never ends a
    row early (EOS) nor emits undecodable ids: every configuration does the same work."""
    import torch

    head = model.get_output_embeddings().weight
    with torch.no_grad():
        head[len(tokenizer):] = 0
        head[sorted(set(tokenizer.all_special_ids))] = 0


def make_requests(n: int, image_size: int, seed: int) -> list[Request]:
    """n (prompt, seeded random RGB image) pairs; square images at the model's size (no padding step differs)."""
    from PIL import Image

    rng = random.Random(seed)
    return [Request(PROMPTS[i % len(PROMPTS)],
                    Image.frombytes("RGB", (image_size, image_size), rng.randbytes(image_size * image_size * 3)))
            for i in range(n)]


def tensor_bytes(*modules) -> int:
    """Bytes of the distinct parameters and buffers of the modules (shared tensors counted once)."""
    seen, total = set(), 0
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            key = (str(t.device), t.data_ptr(), t.dtype)
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


class DirectRunner:
    """vlreft's path without lmms-eval (which the GPU image may lack): requests sorted by prompt length (longest
    first, the order lmms-eval's Collator gives vlreft), batched, then the `Generator` vlreft runs every batch
    through (inputs, ReFT interventions on the prompt forward, `generate`), decode, original order back."""

    def __init__(self, model, processor, device, batch_size: int, new_tokens: int, adapter=None, sync=None):
        from vlm_peft_bench.generation import Generator

        self.generator = Generator(model, processor, device, adapter)
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


def write_reft_folder(n_layers: int, hidden: int, dest: Path, seed: int) -> Path:
    """A pyreft-format folder (config.json + intkey_*.bin + our positions file) with one LoReFT intervention per
    decoder layer, made with our reimplementation of pyreft's class (no pyreft needed), so that it loads through
    `attach_adapter` as vlreft loads any."""
    import torch

    from vlm_peft_bench.adapters.interventions import LoreftIntervention
    from vlm_peft_bench.adapters.reft_files import ReftEntry, layer_component, save_reft_folder

    torch.manual_seed(seed)
    rank = REFT_RECIPE["rank"]
    entries = []
    for layer in range(n_layers):
        module = LoreftIntervention(embed_dim=hidden, low_rank_dimension=rank, dtype=torch.float32)
        with torch.no_grad():  # not the identity: a trained-looking learned source
            module.learned_source.weight.normal_(0, 0.02)
            module.learned_source.bias.normal_(0, 0.02)
        entries.append(ReftEntry(layer, layer_component(layer), rank, module))
    return save_reft_folder(dest, entries, REFT_RECIPE["positions"], REFT_RECIPE["share_weights"])


def write_lora_folder(base, dest: Path, seed: int) -> Path:
    """A peft LoRA folder made by peft itself on a copy of the base (random, non-zero B: merging changes weights)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    warnings.filterwarnings("ignore", message="Could not find a config file", category=UserWarning)
    donor = get_peft_model(copy.deepcopy(base), LoraConfig(**LORA_RECIPE, init_lora_weights=False))
    with torch.no_grad():
        for name, p in donor.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)  # a small update, as after training; the cost is the same at any scale
    donor.save_pretrained(str(dest))
    del donor
    return dest


def build_runner(cfg: Config, ctx: dict) -> tuple[Any, int]:
    """(runner, bytes of the configuration's own weights) for one configuration."""
    base, processor, device, sync = ctx["base"], ctx["processor"], ctx["device"], ctx["sync"]
    new_tokens = 1 if cfg.one_token else ctx["new_tokens"]
    if cfg.kind == "vlreft":
        return DirectRunner(base, processor, device, cfg.batch_size, new_tokens, sync=sync), tensor_bytes(base)
    if cfg.kind == "reft":
        from vlm_peft_bench.methods.attach import attach_adapter

        text = ctx["config"].text_config
        folder = write_reft_folder(text.num_hidden_layers, text.hidden_size, ctx["tmp"] / "reft", ctx["seed"])
        model = copy.deepcopy(base)  # its own copy: hooks on the shared base would slow the bare passes
        adapter = attach_adapter(model, str(folder))
        runner = DirectRunner(model, processor, device, cfg.batch_size, new_tokens, adapter=adapter, sync=sync)
        return runner, tensor_bytes(model, *adapter.reft.modules)
    if cfg.kind == "lora":
        from vlm_peft_bench.methods.attach import attach_adapter

        if "lora_dir" not in ctx:
            ctx["lora_dir"] = write_lora_folder(base, ctx["tmp"] / "lora", ctx["seed"])
        adapter = attach_adapter(copy.deepcopy(base), str(ctx["lora_dir"]), merge_lora=cfg.merge)
        runner = DirectRunner(adapter.model, processor, device, cfg.batch_size, new_tokens, sync=sync)
        return runner, tensor_bytes(adapter.model)
    if cfg.kind == "llava_hf":
        import lmms_eval.models.simple.llava_hf as llava_hf_module

        llava_hf_module.tqdm = _silent_tqdm  # its progress bar ignores TQDM_DISABLE and would swamp the table
        folder = write_llava_hf_folder(base, ctx["config"], ctx["tmp"] / "llava-hf")
        device_name = "cuda:0" if device.type == "cuda" and device.index is None else str(device)
        lm = llava_hf_module.LlavaHf(pretrained=str(folder), device=device_name, device_map=device_name,
                                     dtype=str(ctx["dtype"]).removeprefix("torch."), batch_size=cfg.batch_size)
        return LlavaHfRunner(lm, new_tokens, sync=sync), tensor_bytes(lm.model)
    raise ValueError(f"unknown configuration kind {cfg.kind!r}")


def _error(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}{at}"


def timed_pass(runner, requests: list[Request], device, sync: Callable[[], None]) -> tuple[float, int | None, Any]:
    """(wall seconds, bytes allocated above the pass's start at its peak (CUDA), result) of one pass."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    sync()
    start = time.perf_counter()
    result = runner.run(requests)
    sync()
    wall = time.perf_counter() - start
    transient = torch.cuda.max_memory_allocated(device) - before if cuda else None
    return wall, transient, result


def flop_model(model, config) -> dict:
    """Parameter counts by part (from the model's own tensors) and the per-token FLOP formulas' inputs."""
    parts = {"vision": 0, "vision_position_table": 0, "projector": 0, "lm_embedding": 0, "lm_head": 0, "lm_layers": 0}
    for name, p in model.named_parameters():
        if "vision_tower" in name:
            parts["vision_position_table" if "position_embedding" in name else "vision"] += p.numel()
        elif "multi_modal_projector" in name:
            parts["projector"] += p.numel()
        elif "lm_head" in name:
            parts["lm_head"] += p.numel()
        elif "embed_tokens" in name:
            parts["lm_embedding"] += p.numel()
        else:
            parts["lm_layers"] += p.numel()
    vc, tc = config.vision_config, config.text_config
    return {"params": parts, "params_total": sum(parts.values()),
            "n_patches": (vc.image_size // vc.patch_size) ** 2, "vision_layers": vc.num_hidden_layers,
            "vision_hidden": vc.hidden_size, "text_layers": tc.num_hidden_layers, "text_hidden": tc.hidden_size,
            "kv_dim": tc.num_key_value_heads * (tc.hidden_size // tc.num_attention_heads)}


def prefill_flops(fm: dict, prompt_len: int) -> float:
    """Useful forward FLOPs of one row's prefill: vision tower + projector on its image's patches, the decoder on
    every prompt token (image tokens included; causal attention), the lm_head on the last position only (what
    generate asks for). 2 FLOPs per multiply-add; padding not counted."""
    p, n = fm["params"], fm["n_patches"]
    vision = 2 * p["vision"] * n + 4 * fm["vision_layers"] * fm["vision_hidden"] * n * n
    projector = 2 * p["projector"] * n
    decoder = 2 * p["lm_layers"] * prompt_len + 4 * fm["text_layers"] * fm["text_hidden"] * prompt_len * (
        prompt_len + 1) / 2
    return vision + projector + decoder + 2 * p["lm_head"]


def decode_flops(fm: dict, context: int) -> float:
    """FLOPs of one generated token at a context of `context` tokens: decoder + lm_head + attention over the cache."""
    p = fm["params"]
    return 2 * (p["lm_layers"] + p["lm_head"]) + 4 * fm["text_layers"] * fm["text_hidden"] * context


def decode_bytes(fm: dict, contexts: list[int], element: int) -> float:
    """Bytes one decode step of a batch reads at least: decoder and lm_head weights once, each row's KV cache."""
    p = fm["params"]
    weights = (p["lm_layers"] + p["lm_head"]) * element
    return weights + sum(2 * fm["text_layers"] * fm["kv_dim"] * c * element for c in contexts)


def lookup_peak(device_name: str) -> tuple[str, float, float | None] | None:
    """The first PEAKS row whose pattern matches the name torch.cuda.get_device_name gives, or None."""
    return next((row for row in PEAKS if re.search(row[0], device_name)), None)


def peaks(device, tflops: float | None, gbps: float | None) -> dict:
    """The card's dense bf16 peak and memory bandwidth: overrides first, then the table, else None with why."""
    import torch

    if device.type != "cuda":
        name, hit = platform.processor() or "cpu", None
    else:
        name = torch.cuda.get_device_name(device)
        hit = lookup_peak(name)
    out = {"device_name": name, "tflops": tflops, "gbps": gbps, "tflops_source": None, "gbps_source": None}
    for key, index, flag in (("tflops", 1, "--peak-tflops"), ("gbps", 2, "--peak-gbps")):
        if out[key] is not None:
            out[f"{key}_source"] = flag
        elif hit is not None and hit[index] is not None:
            out[key], out[f"{key}_source"] = hit[index], f"table ({hit[0]})"
        else:
            why = "not a CUDA device" if device.type != "cuda" else f"{name!r} not in the peak table"
            out[f"{key}_source"] = f"unknown: {why}; pass {flag}"
    return out


def roofline(measured: dict[str, Measured], fm: dict, items: int, new_tokens: int, element: int,
             peak: dict) -> dict:
    """Prefill and decode tokens/s and TFLOP/s (and decode GB/s) of the bare model at batch 1 and 8, vs peak."""
    out = {}
    for bs in (1, 8):
        full, pre = measured.get(f"vlreft_bs{bs}"), measured.get(f"vlreft_bs{bs}_prefill")
        row: dict[str, Any] = {"batch_size": bs}
        if not full or not pre or full.status != "ok" or pre.status != "ok":
            row["reason"] = f"vlreft_bs{bs} or vlreft_bs{bs}_prefill did not run"
            out[f"bs{bs}"] = row
            continue
        prompts = pre.first.prompt_tokens
        pre_s = statistics.median(pre.generate_runs_s)
        gen_s = statistics.median(full.generate_runs_s)
        flops = sum(prefill_flops(fm, n) for n in prompts)
        row.update(prompt_tokens_mean=statistics.mean(prompts), image_tokens_per_prompt=fm["n_patches"],
                   prefill_s=pre_s, prefill_tokens_per_s=sum(prompts) / pre_s,
                   prefill_gflop_per_prompt=flops / len(prompts) / 1e9, prefill_tflops=flops / pre_s / 1e12,
                   generate_s=gen_s, generated_tokens_per_s=items * new_tokens / gen_s)
        decode_s = gen_s - pre_s
        steps = new_tokens - 1
        if decode_s <= 0 or steps < 1:
            row["decode_reason"] = f"decode time {decode_s:.4f} s over {steps} steps: not measurable"
        else:
            d_flops = sum(decode_flops(fm, n + k) for n in prompts for k in range(1, steps + 1))
            batches = [prompts[i:i + bs] for i in range(0, len(prompts), bs)]
            d_bytes = sum(decode_bytes(fm, [n + k for n in b], element) for b in batches for k in range(1, steps + 1))
            row.update(decode_s=decode_s, decode_tokens_per_s=items * steps / decode_s,
                       decode_gflop_per_token=d_flops / (items * steps) / 1e9, decode_tflops=d_flops / decode_s / 1e12,
                       decode_gbps=d_bytes / decode_s / 1e9)
        for key, num, den in (("prefill_fraction_of_peak_tflops", "prefill_tflops", "tflops"),
                              ("decode_fraction_of_peak_tflops", "decode_tflops", "tflops"),
                              ("decode_fraction_of_peak_gbps", "decode_gbps", "gbps")):
            row[key] = row[num] / peak[den] if row.get(num) is not None and peak[den] else None
        out[f"bs{bs}"] = row
    return out


def evaluate_ratios(measured: dict[str, Measured]) -> dict:
    out = {}
    for key, (num, den, what, target, direction) in RATIOS.items():
        entry: dict[str, Any] = {"what": what, "ratio": None, "ratio_best_pass": None,
                                 "target": None if target is None else f"{direction} {target}", "met": None}
        missing = [f"{c} {measured[c].status}" if c in measured else f"{c} not run"
                   for c in (num, den) if c not in measured or measured[c].status != "ok"]
        if missing:  # the configurations' own entries say why
            entry["reason"] = ", ".join(missing)
        else:  # throughput num / den == time den / time num over the same items
            a, b = measured[num].runs_s, measured[den].runs_s
            entry["ratio"] = statistics.median(b) / statistics.median(a)
            entry["ratio_best_pass"] = min(b) / min(a)
            if target is not None:
                entry["met"] = entry["ratio"] >= target if direction == ">=" else entry["ratio"] <= target
        out[key] = entry
    return out


def agreement(measured: dict[str, Measured], items: int) -> dict:
    out = {}
    for key, (a, b, on) in AGREEMENT.items():
        ma, mb = measured.get(a), measured.get(b)
        if not ma or not mb or ma.status != "ok" or mb.status != "ok":
            out[key] = {"mismatches": None, "of": items, "on": on, "reason": f"{a} or {b} did not run"}
            continue
        xs = ma.first.texts if on == "text" else ma.first.ids
        ys = mb.first.texts if on == "text" else mb.first.ids
        diff = [i for i, (x, y) in enumerate(zip(xs, ys)) if (x.strip() != y.strip() if on == "text" else x != y)]
        out[key] = {"mismatches": len(diff), "of": items, "on": on, "items": diff[:20]}
    return out


def run_all(args, ctx: dict, names: list[str]) -> dict[str, Measured]:
    """Build every configuration, warm each up, then the interleaved timed repeats (stopping early for the budget)."""
    measured = {c.name: Measured(c) for c in CONFIGS if c.name in names}
    libs = ctx["libraries"]
    for name, m in measured.items():
        missing = [n for n in m.config.needs if not libs[n]["available"]]
        if missing:
            m.status, m.reason = "skipped", "; ".join(f"{n} not importable ({libs[n]['error']})" for n in missing)
            continue
        start = time.perf_counter()
        try:
            ctx.setdefault("runners", {})[name], m.weights_bytes = build_runner(m.config, ctx)
        except Exception as err:
            m.status, m.reason = "failed", f"build: {_error(err)}"
        m.build_s = time.perf_counter() - start
    runners, requests = ctx.get("runners", {}), ctx["requests"]
    for name, m in measured.items():  # warm-up (first-call allocations, kernel selection): not timed
        if m.status == "ok":
            try:
                timed_pass(runners[name], requests[: max(2, m.config.batch_size)], ctx["device"], ctx["sync"])
            except Exception as err:
                m.status, m.reason = "failed", f"warm-up: {_error(err)}"
    live = [n for n in measured if measured[n].status == "ok"]
    ctx["repeats_done"], ctx["stopped_for_budget"] = 0, False
    for rep in range(args.repeats):
        rep_start = time.perf_counter()
        order = live[rep % len(live):] + live[: rep % len(live)] if live else []
        for name in order:
            m = measured[name]
            if m.status != "ok":
                continue
            try:
                wall, transient, result = timed_pass(runners[name], requests, ctx["device"], ctx["sync"])
            except Exception as err:
                m.status, m.reason = "failed", f"timed pass: {_error(err)}"
                continue
            m.runs_s.append(wall)
            if result.generate_s is not None:
                m.generate_runs_s.append(result.generate_s)
            if transient is not None:
                m.transient_bytes = max(m.transient_bytes or 0, transient)
            if m.first is None:
                m.first = result
            elif result.texts != m.first.texts:
                m.changed_between_repeats = True
        ctx["repeats_done"] = rep + 1
        elapsed, per_repeat = time.perf_counter() - STARTED, time.perf_counter() - rep_start
        if rep + 1 < args.repeats and elapsed + per_repeat > args.budget_s:
            ctx["stopped_for_budget"] = True
            break
    return measured


def config_entry(m: Measured, items: int, new_tokens: int, ordinary: set[int]) -> dict:
    """One configuration's JSON: status, medians, throughput, memory, and checks on what it generated (`ordinary`:
    the tokenizer's non-special ids, the only ones the zeroed lm_head rows leave to greedy decoding)."""
    entry: dict[str, Any] = {"status": m.status, "reason": m.reason, "batch_size": m.config.batch_size,
                             "new_tokens_per_item": 1 if m.config.one_token else new_tokens,
                             "build_s": m.build_s}
    mib = 1024 ** 2
    entry["weights_mib"] = None if m.weights_bytes is None else m.weights_bytes / mib
    entry["transient_peak_mib"] = None if m.transient_bytes is None else m.transient_bytes / mib
    entry["peak_mib"] = (None if m.weights_bytes is None or m.transient_bytes is None
                         else (m.weights_bytes + m.transient_bytes) / mib)
    if m.status != "ok" or not m.runs_s:
        return entry
    med = statistics.median(m.runs_s)
    per_item = entry["new_tokens_per_item"]
    ids = m.first.ids
    entry.update(seconds=med, runs_s=m.runs_s, samples_per_s=items / med, new_tokens=items * per_item,
                 new_tokens_per_s=items * per_item / med,
                 generate_s=statistics.median(m.generate_runs_s) if m.generate_runs_s else None,
                 generate_runs_s=m.generate_runs_s or None,
                 every_row_full_length=None if ids is None else all(len(r) == per_item for r in ids),
                 only_ordinary_tokens=None if ids is None else all(t in ordinary for r in ids for t in r),
                 changed_between_repeats=m.changed_between_repeats, examples=m.first.texts[:2])
    return entry


def versions() -> dict:
    """Installed versions (a library can be installed and still fail to import: see `libraries`)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda}
    for name in ("lmms_eval", "peft", "pyreft", "pyvene"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def default_out(size: str, device_name: str) -> Path:
    """Full-size results go to benchmarks/results/gpu-<device>.json; toy runs (smoke tests) to a temp file."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower() or "device"
    if size == "toy":
        return Path(tempfile.gettempdir()) / f"vlm-peft-bench-gpu-toy-{slug}.json"
    return REPO / "benchmarks" / "results" / f"gpu-{slug}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--size", choices=("full", "toy"), default="full",
                        help="full: nanoLLaVA's architecture (~1.05 B parameters); toy: the tiny checkpoint's sizes")
    parser.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--items", type=int, default=16, help="requests per timed pass (a multiple of 8)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed passes per configuration")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens every row generates (fixed)")
    parser.add_argument("--configs", default=None, help="comma-separated subset of: " + ", ".join(c.name for c in
                                                                                            CONFIGS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 TFLOP/s (overrides)")
    parser.add_argument("--peak-gbps", type=float, default=None, help="the card's memory GB/s (overrides)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="stop adding repeats when the next would end past this many seconds since start")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 items, 1 repeat, 16 new tokens")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.repeats, args.new_tokens = min(args.items, 8), 1, min(args.new_tokens, 16)
    if args.items < 1 or args.repeats < 1 or args.new_tokens < 2:
        parser.error("--items and --repeats must be at least 1, --new-tokens at least 2")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA device here; for the CPU smoke path use --device cpu --size toy")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    _silence()
    names = [c.name for c in CONFIGS]
    if args.configs:
        chosen = [n.strip() for n in args.configs.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise SystemExit(f"gpu.py: unknown configurations {unknown}; known: {names}")
        names = [n for n in names if n in chosen]
    needed = sorted({n for c in CONFIGS if c.name in names for n in c.needs})
    libs = library_status(needed)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    init_start = time.perf_counter()
    base, processor, config = build_base(args.size, device, dtype, args.seed)
    sync()
    init_s = time.perf_counter() - init_start
    requests = make_requests(args.items, config.vision_config.image_size, args.seed)
    with tempfile.TemporaryDirectory(prefix="vlreft-gpu-bench-") as tmp:
        ctx = {"base": base, "processor": processor, "config": config, "device": device, "dtype": dtype,
               "sync": sync, "new_tokens": args.new_tokens, "seed": args.seed, "tmp": Path(tmp),
               "libraries": libs, "requests": requests}
        measured = run_all(args, ctx, names)
        ctx.pop("runners", None)
    fm = flop_model(base, config)
    tokenizer = processor.tokenizer
    ordinary = set(range(len(tokenizer))) - set(tokenizer.all_special_ids)
    peak = peaks(device, args.peak_tflops, args.peak_gbps)
    memory_note = (None if device.type == "cuda" else "CPU run: CUDA memory statistics only exist on a GPU")
    result = {
        "command": " ".join(["benchmarks/gpu.sh", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"platform": platform.platform(), "device": str(device), "device_name": peak["device_name"],
                    "cuda_memory_gib": (torch.cuda.get_device_properties(device).total_memory / 1024 ** 3
                                        if device.type == "cuda" else None),
                    "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "torch_threads": torch.get_num_threads()},
        "versions": versions(),
        "libraries": libs,
        "settings": {"size": args.size, "architecture": "nanoLLaVA (Qwen2-0.5B + SigLIP so400m - last layer, "
                     "mlp2x_gelu)" if args.size == "full" else "toy (nanollava-tiny's dimensions)",
                     "weights": f"random (seed {args.seed}), initialised on the device",
                     "dtype": str(dtype).removeprefix("torch."), "items": args.items, "repeats": args.repeats,
                     "repeats_done": ctx["repeats_done"], "stopped_for_budget": ctx["stopped_for_budget"],
                     "budget_s": args.budget_s, "new_tokens": args.new_tokens,
                     "generation": "greedy; special-token and out-of-tokenizer lm_head rows zeroed, so every row "
                                   "generates exactly new_tokens tokens",
                     "tokenizer": "nanollava-tiny (all ids < vocab_size)",
                     "inputs": "seeded random RGB images at the vision tower's size + cvbench_mini-style prompts",
                     "reft": REFT_RECIPE, "lora": LORA_RECIPE,
                     "order": "interleaved, rotated each repeat; medians"},
        "model": {"params_total": fm["params_total"], "params": fm["params"], "image_tokens": fm["n_patches"],
                  "init_s": init_s},
        "configs": {n: config_entry(measured[n], args.items, args.new_tokens, ordinary) for n in measured},
        "memory_note": memory_note,
        "ratios": evaluate_ratios(measured),
        "greedy_identical": agreement(measured, args.items),
        "peak": peak,
        "throughput_vs_peak": roofline(measured, fm, args.items, args.new_tokens, base.dtype.itemsize, peak),
        "wall_s_total": time.perf_counter() - STARTED,
    }
    out = args.out or default_out(args.size, peak["device_name"] if device.type == "cuda" else "cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return result


def _f(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(result: dict) -> str:
    s, m, mod = result["settings"], result["machine"], result["model"]
    lines = [f"{s['size']} model ({mod['params_total'] / 1e9:.3f} B params, {mod['image_tokens']} image tokens), "
             f"{s['dtype']}, random weights, on {m['device_name']} ({m['device']}); {s['items']} items x "
             f"{s['repeats_done']}/{s['repeats']} interleaved repeats, {s['new_tokens']} new tokens per item"
             + (" (stopped early: time budget)" if s["stopped_for_budget"] else ""), "",
             "| config | status | samples/s | new tokens/s | in generate s | weights MiB | peak MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, c in result["configs"].items():
        status = c["status"] if c["status"] == "ok" else f"{c['status']}: {c['reason']}"
        lines.append(f"| {name} | {status} | {_f(c.get('samples_per_s'))} | {_f(c.get('new_tokens_per_s'), '.1f')} | "
                     f"{_f(c.get('generate_s'), '.3f')} | {_f(c['weights_mib'], '.0f')} | {_f(c['peak_mib'], '.0f')} |")
    if result["memory_note"]:
        lines.append(f"({result['memory_note']})")
    lines += ["", "| ratio (side by side) | median | best pass | target | met |", "|---|---:|---:|---:|---|"]
    for r in result["ratios"].values():
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        extra = f" ({r['reason']})" if r.get("reason") else ""
        lines.append(f"| {r['what']}{extra} | {_f(r['ratio'], '.3f')} | {_f(r['ratio_best_pass'], '.3f')} | "
                     f"{r['target'] or '-'} | {met} |")
    p = result["peak"]
    lines += ["", f"peak: {_f(p['tflops'], '.0f')} TFLOP/s dense bf16 [{p['tflops_source']}], "
                  f"{_f(p['gbps'], '.0f')} GB/s [{p['gbps_source']}]",
              "| bare model | prompt tok | prefill tok/s | prefill TFLOP/s | % peak | decode tok/s | "
              "decode TFLOP/s | % peak | decode GB/s | % peak BW |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in result["throughput_vs_peak"].items():
        if "reason" in r:
            lines.append(f"| {key} | {r['reason']} |")
            continue

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}"

        lines.append(f"| {key} | {r['prompt_tokens_mean']:.0f} | {r['prefill_tokens_per_s']:.0f} | "
                     f"{_f(r['prefill_tflops'], '.3f')} | {pct(r['prefill_fraction_of_peak_tflops'])} | "
                     f"{_f(r.get('decode_tokens_per_s'), '.1f')} | {_f(r.get('decode_tflops'), '.4f')} | "
                     f"{pct(r['decode_fraction_of_peak_tflops'])} | {_f(r.get('decode_gbps'), '.1f')} | "
                     f"{pct(r['decode_fraction_of_peak_gbps'])} |")
    lines.append("")
    for key, g in result["greedy_identical"].items():
        if g["mismatches"] is None:
            lines.append(f"greedy {key}: not compared ({g['reason']})")
        else:
            lines.append(f"greedy {key} ({g['on']}): {g['of'] - g['mismatches']}/{g['of']} identical")
    short = [n for n, c in result["configs"].items() if c.get("every_row_full_length") is False]
    odd = [n for n, c in result["configs"].items() if c.get("only_ordinary_tokens") is False]
    lines.append("every row generated the full number of tokens" if not short
                 else f"rows ended early in: {', '.join(short)}")
    if odd:
        lines.append(f"special or out-of-tokenizer ids generated in: {', '.join(odd)}")
    lines.append(f"model init {mod['init_s']:.1f} s; total {result['wall_s_total']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
