"""Find and load a nanoLLaVA model: the embedded tiny model, a local folder, or a Hugging Face Hub id.

Never executes code from a checkpoint (`trust_remote_code` is never passed), and never waits on a network
that is not there: a Hub id while offline fails at once with what to do instead.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration, PreTrainedTokenizerBase

from vlm_peft_bench.nanollava.checkpoint import (
    CheckpointError,
    config_from_original,
    convert_state_dict,
    is_original_config,
    load_state_dict,
    read_config,
    weight_files,
)
from vlm_peft_bench.nanollava.config import IMAGE_TOKEN, NANOLLAVA_IMAGE_TOKEN_ID
from vlm_peft_bench.nanollava.processing import NanoLlavaProcessor

TINY_NAME = "nanollava-tiny"
TINY_DIR = Path(__file__).resolve().parent.parent / "assets" / TINY_NAME
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


@dataclass
class LoadedModel:
    model: LlavaForConditionalGeneration
    processor: NanoLlavaProcessor
    source: str  # what `pretrained` resolved to (a folder)
    layout: str  # "native" or "original"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers a TCP connection within `timeout` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not hub_reachable()


def hub_snapshot(repo_id: str, argument: str, patterns: list[str], error=CheckpointError) -> Path:
    """A local folder with the Hub repo's files: the local cache first, a download only when the Hub answers."""
    from huggingface_hub import snapshot_download

    try:  # a previous download in the local cache needs no network
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if hub_offline():
        raise error(
            f"{argument}={repo_id!r} looks like a Hugging Face Hub id, but the Hub is not reachable and it is not "
            f"in the local cache. On a connected machine run `huggingface-cli download {repo_id} --local-dir DIR`, "
            f"copy DIR here and pass {argument}=DIR."
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:
        raise error(f"{argument}={repo_id!r}: download from the Hub failed ({err})") from err


def looks_like_hub_id(value: str) -> bool:
    return bool(HUB_ID.match(value)) and not value.startswith((".", "/", "~")) and not Path(value).exists()


def resolve_pretrained(pretrained: str) -> Path:
    """The local folder that `pretrained` names (downloading a Hub id when online)."""
    if pretrained == TINY_NAME:
        if not (TINY_DIR / "config.json").is_file():
            raise CheckpointError(f"the embedded {TINY_NAME} files are missing from {TINY_DIR}: reinstall the package")
        return TINY_DIR
    path = Path(pretrained).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"pretrained={pretrained!r} is a file; pass the folder that holds config.json")
        return path
    if looks_like_hub_id(pretrained):
        return hub_snapshot(pretrained, "pretrained", HUB_FILES)
    raise CheckpointError(
        f"pretrained={pretrained!r} is neither {TINY_NAME!r}, an existing folder, nor a Hub id (owner/name). "
        f"Use pretrained={TINY_NAME}, pretrained=/path/to/nanoLLaVA or pretrained=qnguyen3/nanoLLaVA."
    )


def _check_folder(folder: Path) -> None:
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, or vocab.json + merges.txt)")
    try:
        weight_files(folder)
    except CheckpointError:
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        raise CheckpointError(f"{folder}: missing {', '.join(missing)}; copy the complete model folder")


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, with nanoLLaVA's `<image>` token given a real id if it has none."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [IMAGE_TOKEN]}, replace_additional_special_tokens=False
        )
    return tokenizer


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """`auto` means bfloat16 on an accelerator that supports it, float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype={dtype!r} is not a torch dtype (use auto, float32, bfloat16 or float16)")
    return value


def load_nanollava(
    pretrained: str = TINY_NAME,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
    system_prompt: str | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a nanoLLaVA model and its processor from the embedded tiny model, a folder or a Hub id."""
    folder = resolve_pretrained(pretrained)
    _check_folder(folder)
    torch_dtype = resolve_dtype(dtype, device)
    raw_config = read_config(folder)
    tokenizer = load_tokenizer(folder)
    kwargs = dict(torch_dtype=torch_dtype, attn_implementation=attn_implementation)
    if is_original_config(raw_config):
        layout = "original"
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        vocab = raw_config.get("vocab_size", 0)
        if not 0 <= image_id < vocab:
            raise CheckpointError(
                f"{folder}: the tokenizer gives {IMAGE_TOKEN} the id {image_id}, outside the model's {vocab} "
                f"embedding rows (nanoLLaVA uses {NANOLLAVA_IMAGE_TOKEN_ID}); the tokenizer does not match the model"
            )
        config = config_from_original(raw_config, image_id)
    else:
        layout = "native"
        config = LlavaConfig.from_dict(raw_config)
    model = build_model(config, load_state_dict(weight_files(folder)), folder, layout == "original", **kwargs)
    model.to(device).eval()
    return LoadedModel(model, NanoLlavaProcessor(tokenizer, config, system_prompt), str(folder), layout)


def build_model(
    config: LlavaConfig, state: dict[str, torch.Tensor], folder: Path, original: bool, **kwargs
) -> LlavaForConditionalGeneration:
    """The native model holding `state`, renamed first from whichever nanoLLaVA layout it was saved in."""
    with torch.device("meta"):
        skeleton = LlavaForConditionalGeneration(config)
    state = convert_state_dict(state, skeleton)
    _check_complete(skeleton, state, folder, converted=original)
    return LlavaForConditionalGeneration.from_pretrained(None, config=config, state_dict=state, **kwargs)


def _check_complete(model: torch.nn.Module, state: dict, folder: Path, converted: bool) -> None:
    """Every parameter must come from the checkpoint with the right shape: no silent random weights."""
    expected = {name: p.shape for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(n for n in set(expected) & set(state) if tuple(state[n].shape) != tuple(expected[n]))
    if missing or unexpected or wrong:
        what = "after conversion from the original layout" if converted else ""
        raise CheckpointError(
            f"{folder}: weights do not match the architecture in config.json {what}: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(wrong)} with another shape (e.g. {wrong[:2]}). The checkpoint is incomplete or for another model."
        )
