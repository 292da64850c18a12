"""peft prefix-tuning adapters on nanoLLaVA, applied as a pre-filled key/value cache.

peft's own generation path for prefix-tuning does not work with transformers 4.45's Llava (its
`prepare_inputs_for_generation` drops the image on a pre-filled cache), so we build the cache exactly as peft's
`get_prompt` does and decode ourselves (greedy or sampling, `nanollava/decoding.py`). The prompt's position ids
continue after the virtual tokens, counted from each row's first real token, so left padding does not change a
row's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DynamicCache

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.peft_adapter import read_adapter_config, read_adapter_weights
from vlm_peft_bench.nanollava.decoding import DecodeSettings, decode
from vlm_peft_bench.nanollava.kv_cache import cache_argument, cache_from_layers, returned_cache


@dataclass
class PrefixAdapter:
    model: torch.nn.Module
    embeddings: torch.Tensor  # [virtual tokens, layers * 2 * hidden], as peft saves `prompt_embeddings`
    num_layers: int
    num_heads: int

    @property
    def length(self) -> int:
        return self.embeddings.shape[0]

    def cache(self, batch_size: int) -> DynamicCache:
        """peft's layout: view(B, T, L*2, H, D), permute to (L*2, B, H, T, D), pairs of (key, value) per layer."""
        head_dim = self.embeddings.shape[1] // (self.num_layers * 2 * self.num_heads)
        kv = self.embeddings.unsqueeze(0).expand(batch_size, -1, -1)
        kv = kv.reshape(batch_size, self.length, self.num_layers * 2, self.num_heads, head_dim)
        kv = kv.permute([2, 0, 3, 1, 4]).split(2)
        return cache_from_layers(kv)

    def forward(self, **inputs):
        """One forward pass with the prefix in front of every row."""
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        mask = inputs["attention_mask"]
        batch = mask.shape[0]
        positions = self.length + (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(**{**inputs, "attention_mask": torch.cat([self.ones(batch, mask), mask], 1)},
                         position_ids=positions, use_cache=True, **{cache_argument(self.model): self.cache(batch)})
        if labels is not None:  # next-token loss on the labelled positions (Llava's own assumes no prefix)
            logits = out.logits[:, :-1].float()
            out.loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return out

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, pixel_values=None, num_beams: int = 1, **kwargs):
        """`generate`'s answer for rows with the prefix in front (greedy or sampling: `nanollava/decoding.py`)."""
        if num_beams != 1:
            raise AdapterError("beam search is not supported with prefix-tuning adapters (use num_beams=1)")
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if pixel_values is not None:
            inputs["pixel_values"] = pixel_values
        out = self.forward(**inputs)
        mask = torch.cat([self.ones(input_ids.shape[0], attention_mask), attention_mask], 1)
        new = decode(self.model, out.logits[:, -1], returned_cache(out), mask,
                     self.length + attention_mask.sum(-1), DecodeSettings.from_generate_kwargs(kwargs))
        return torch.cat([input_ids, new], 1)

    def ones(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The attention mask's columns for the virtual tokens."""
        return torch.ones(batch, self.length, dtype=like.dtype, device=like.device)


def load_prefix(model: torch.nn.Module, folder: Path) -> PrefixAdapter:
    embeddings = check_prefix(model, folder)
    text = model.config.text_config
    param = next(model.parameters())
    return PrefixAdapter(model, embeddings.to(param.device, param.dtype), text.num_hidden_layers,
                         text.num_attention_heads)


def check_prefix(model: torch.nn.Module, folder: Path) -> torch.Tensor:
    """Every check `load_prefix` makes (the model may be on the meta device); the prefix's `prompt_embeddings`."""
    config = read_adapter_config(folder)
    if str(config["peft_type"]).upper() != "PREFIX_TUNING":
        raise AdapterError(f"{folder}: not a prefix-tuning adapter")
    state = read_adapter_weights(folder)
    if "prompt_embeddings" not in state:
        raise AdapterError(f"{folder}: no `prompt_embeddings` tensor in the adapter weights")
    embeddings = state["prompt_embeddings"]
    text = model.config.text_config
    expected = text.num_hidden_layers * 2 * text.hidden_size
    if embeddings.ndim != 2 or embeddings.shape[1] != expected:
        raise AdapterError(f"{folder}: prompt_embeddings has shape {tuple(embeddings.shape)}; this model needs "
                           f"[virtual tokens, {expected}] ({text.num_hidden_layers} layers x 2 x {text.hidden_size}): "
                           "another base model?")
    return embeddings


class PrefixModel(torch.nn.Module):
    """A trainable prefix in front of a (frozen or LoRA-carrying) model, applied exactly as evaluation does."""

    def __init__(self, model: torch.nn.Module, num_virtual_tokens: int, init: torch.Tensor | None = None):
        super().__init__()
        text = _config(model).text_config
        width = text.num_hidden_layers * 2 * text.hidden_size
        param = next(model.parameters())
        start = init if init is not None else torch.randn(num_virtual_tokens, width)  # peft: nn.Embedding's N(0, 1)
        self.model = model
        self.embeddings = torch.nn.Parameter(start.to(param.device, param.dtype).clone())
        self.adapter = PrefixAdapter(model, self.embeddings, text.num_hidden_layers, text.num_attention_heads)

    @property
    def config(self):
        return _config(self.model)

    def forward(self, **inputs):
        return self.adapter.forward(**inputs)

    def generate(self, **kwargs):
        return self.adapter.generate(**kwargs)


def _config(model: torch.nn.Module):
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def save_prefix(folder: Path, prefix: PrefixModel) -> None:
    """peft's own prefix-tuning format: adapter_config.json + `prompt_embeddings` in safetensors."""
    from peft import PrefixTuningConfig, TaskType

    text = prefix.config.text_config
    folder.mkdir(parents=True, exist_ok=True)
    PrefixTuningConfig(num_virtual_tokens=prefix.embeddings.shape[0], task_type=TaskType.CAUSAL_LM,
                       num_layers=text.num_hidden_layers, token_dim=text.hidden_size,
                       num_attention_heads=text.num_attention_heads, num_transformer_submodules=1,
                       ).save_pretrained(str(folder))
    save_file({"prompt_embeddings": prefix.embeddings.detach().float().cpu().contiguous()},
              str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
