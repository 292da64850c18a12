"""The model under test and its inputs: nanoLLaVA's architecture (or a toy at the tiny checkpoint's sizes) with
random weights, lm_head rows zeroed so that every row generates the same number of tokens, seeded requests."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

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


@dataclass
class Request:
    text: str
    image: Any  # PIL.Image.Image


def model_sizes(size: str) -> tuple[dict, dict]:
    """(text, vision) config dicts: nanoLLaVA's (`full`) or a toy at the tiny checkpoint's dimensions (`toy`)."""
    from vlm_peft_bench.nanollava.config import NANOLLAVA_TEXT, NANOLLAVA_VISION, TINY_TEXT, TINY_VISION

    if size == "full":
        return dict(NANOLLAVA_TEXT), dict(NANOLLAVA_VISION)
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
