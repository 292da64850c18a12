"""What the CPU suite (`benchmarks/run.py`) and the GPU benchmark (`benchmarks/gpu/`) share: the ratios and their
targets, the processor files that let lmms-eval's `llava_hf` load a nanoLLaVA folder, quiet logging, versions.

Stdlib only at import, and no side effects: each script calls `environment_defaults()` before any library loads.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name: (numerator config, denominator config, what, target, direction) on samples/s; the ratio is num/den, i.e.
# time den / time num over the same items.
RATIOS = {
    "vlreft_vs_llava_hf": ("vlreft_bs1", "llava_hf_bs1", "throughput vlreft / llava_hf", 1.0, ">="),
    "reft_overhead": ("vlreft_bs1", "reft_bs1", "time ReFT / bare (1 + overhead)", 1.03, "<="),
    "lora_merged_vs_bare": ("vlreft_bs1", "lora_merged_bs1", "time merged LoRA / bare", 1.03, "<="),
    "lora_unmerged_vs_bare": ("vlreft_bs1", "lora_unmerged_bs1", "time unmerged LoRA / bare", None, None),
    "lora_merged_vs_unmerged": ("lora_unmerged_bs1", "lora_merged_bs1", "time merged / unmerged LoRA", None, None),
    "batch8_vs_batch1": ("vlreft_bs8", "vlreft_bs1", "throughput batch 8 / batch 1", 3.0, ">="),
}
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def environment_defaults() -> None:
    """Offline Hub and datasets, no tokenizer threads, no tqdm bars (those of generate_until would swamp the tables);
    variables already set are kept."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")


def target_text(key: str) -> str | None:
    """The RATIOS target of `key` as written in the JSON (`>= 1.0`), or None when it has none."""
    _, _, _, target, direction = RATIOS[key]
    return None if target is None else f"{direction} {target}"


def target_met(key: str, ratio: float) -> bool | None:
    """Whether `ratio` meets the RATIOS target of `key` (None when it has none)."""
    _, _, _, target, direction = RATIOS[key]
    if target is None:
        return None
    return ratio >= target if direction == ">=" else ratio <= target


def rotated(names: list[str], rep: int) -> list[str]:
    """The order of repeat `rep`: `names` rotated by `rep`, so that no configuration always goes first."""
    if not names:
        return []
    k = rep % len(names)
    return names[k:] + names[:k]


def text_mismatches(a: list[str], b: list[str]) -> list[int]:
    """Indices where two lists of answers differ, ignoring surrounding whitespace."""
    return [i for i, (x, y) in enumerate(zip(a, b)) if x.strip() != y.strip()]


def write_llava_hf_files(dest: Path, size: int, patch: int) -> None:
    """The processor files transformers' AutoProcessor needs to load `dest` as a LlavaProcessor for nanoLLaVA
    (the tokenizer files must be there already): ChatML chat template, SigLIP's image processor at `size`,
    `<image>` expanded to one token per `patch`-pixel patch."""
    import json

    tok = json.loads((dest / "tokenizer_config.json").read_text())
    tok["chat_template"] = CHATML_TEMPLATE
    tok["model_input_names"] = ["input_ids", "attention_mask"]  # no token_type_ids: Llava's generate refuses them
    (dest / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    (dest / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SiglipImageProcessor", "processor_class": "LlavaProcessor",
        "do_resize": True, "size": {"height": size, "width": size}, "resample": 3, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
    }, indent=2))
    (dest / "processor_config.json").write_text(json.dumps({
        "processor_class": "LlavaProcessor", "patch_size": patch, "image_token": "<image>", **one_token_per_patch(),
    }, indent=2))


def one_token_per_patch() -> dict:
    """LlavaProcessor settings under which `<image>` becomes exactly one token per patch, as nanoLLaVA's features
    are. transformers 4.45's processor always counts one extra (CLS) token, which the "default" strategy removes;
    later ones count `num_additional_image_tokens` extra tokens instead, and with 0 nanoLLaVA's own "full" strategy
    is exact. Read from the installed processor's arguments, not from a version number."""
    import inspect

    from transformers import LlavaProcessor

    if "num_additional_image_tokens" in inspect.signature(LlavaProcessor.__init__).parameters:
        return {"vision_feature_select_strategy": "full", "num_additional_image_tokens": 0}
    return {"vision_feature_select_strategy": "default"}


def silent_tqdm(*args, **kwargs):
    """tqdm with its bar off: lmms-eval's models create theirs ignoring TQDM_DISABLE."""
    from tqdm import tqdm

    kwargs["disable"] = True
    return tqdm(*args, **kwargs)


def quiet() -> None:
    """Library notices down to warnings (transformers: errors), so that the tables stay readable."""
    import contextlib
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    with contextlib.suppress(ImportError):  # loguru comes with lmms-eval, which a GPU image may lack
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")


def distribution_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed version of each distribution, None where it is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_count() -> int | None:
    """CPUs this process may run on (its affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def fresh(requests):
    """Copies whose generation kwargs are new dicts (llava_hf pops `until` from the shared one)."""
    import copy

    from lmms_eval.api.instance import Instance

    out = []
    for r in requests:
        args = tuple(copy.deepcopy(a) if isinstance(a, dict) else a for a in r.args)
        out.append(Instance(request_type=r.request_type, arguments=args, idx=r.idx, metadata=r.metadata))
    return out


def status_mib(field: str) -> float | None:
    """A VmRSS/VmHWM line of /proc/self/status in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
