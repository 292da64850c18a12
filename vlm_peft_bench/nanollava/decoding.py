"""Token-by-token decoding from a filled key/value cache, for the paths that cannot use transformers' `generate`.

A prefix-tuning adapter's cache sits in front of the prompt, and a shared image prefix's cache is filled before
each question's tokens are run (`vlm_peft_bench/shared_prefix.py`); both then decode here, one token per forward,
positions continuing from each row's last one. Greedy decoding picks the argmax as `generate` does; sampling
applies the temperature and nucleus (top-p) cut only. Rows stop at the end-of-sequence token (then emit the pad
token, as `generate` does) or once their new text contains a stop string; the caller still cuts each text at its
first stop string, so stopping a row late never changes its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vlm_peft_bench.nanollava.kv_cache import cache_argument, returned_cache


@dataclass
class DecodeSettings:
    max_new_tokens: int = 16
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    eos_token_id: int | None = None
    pad_token_id: int = 0
    stop_strings: list[str] = field(default_factory=list)
    tokenizer: object = None  # decodes new tokens for the stop strings

    @classmethod
    def from_generate_kwargs(cls, kwargs: dict) -> DecodeSettings:
        """From transformers `generate` arguments (as `Runner.generate_kwargs` makes them)."""
        return cls(max_new_tokens=int(kwargs.get("max_new_tokens", 16)), do_sample=bool(kwargs.get("do_sample")),
                   temperature=kwargs.get("temperature"), top_p=kwargs.get("top_p"),
                   eos_token_id=kwargs.get("eos_token_id"), pad_token_id=int(kwargs.get("pad_token_id") or 0),
                   stop_strings=list(kwargs.get("stop_strings") or []), tokenizer=kwargs.get("tokenizer"))


def next_tokens(logits: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    """One token per row from its next-token logits [rows, vocabulary]."""
    if not settings.do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / (settings.temperature or 1.0), -1)
    if settings.top_p is not None and settings.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < settings.top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    return torch.multinomial(probs, 1).squeeze(1)


def _stopped(new_tokens: list[torch.Tensor], settings: DecodeSettings) -> torch.Tensor | None:
    """Rows whose last tokens' text contains a stop string (None when there are no stop strings)."""
    if not settings.stop_strings or settings.tokenizer is None:
        return None
    window = max(len(s) for s in settings.stop_strings) + 2  # a token holds at least one character
    tail = torch.stack(new_tokens[-window:], 1).tolist()
    texts = settings.tokenizer.batch_decode(tail)
    return torch.tensor([any(s in text for s in settings.stop_strings) for text in texts],
                        device=new_tokens[-1].device)


def decode(model: torch.nn.Module, logits: torch.Tensor, cache, mask: torch.Tensor, next_position: torch.Tensor,
           settings: DecodeSettings) -> torch.Tensor:
    """New tokens [rows, n] after a forward that left `logits` (each row's next-token logits), `cache` and the
    attention `mask` over the cache; `next_position` [rows] is each row's next position id. The cache is extended
    in place."""
    rows = logits.shape[0]
    done = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    new_tokens: list[torch.Tensor] = []
    name = cache_argument(model)
    position = next_position.reshape(rows, 1)
    for step in range(settings.max_new_tokens):
        token = next_tokens(logits, settings)
        token = torch.where(done, torch.full_like(token, settings.pad_token_id), token)
        new_tokens.append(token)
        if settings.eos_token_id is not None:
            done |= token == settings.eos_token_id
        stopped = _stopped(new_tokens, settings)
        if stopped is not None:
            done |= stopped
        if bool(done.all()) or step == settings.max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=mask.device)], 1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True,
                    **{name: cache})
        cache, logits, position = returned_cache(out), out.logits[:, -1], position + 1
    if not new_tokens:
        return torch.zeros(rows, 0, dtype=torch.long, device=logits.device)
    return torch.stack(new_tokens, 1)
