"""The one way the project runs a nanoLLaVA-architecture model with an adapter: batched generation, forward passes
and log-likelihoods, without lmms-eval.

`vlreft` (the lmms-eval model) runs every request through `Runner`, and so do training-time validation, the
repr-rank measurement and both benchmarks (the GPU one, `benchmarks/gpu/`, must work where lmms-eval is not
installed: what it times is the code that evaluates). Only this class knows which hooks (ReFT) or cache (prefix)
an adapter needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from vlm_peft_bench import shared_context, shared_prefix
from vlm_peft_bench.shared_context import ContinuationRequest, Score
from vlm_peft_bench.shared_prefix import PromptRequest

DEFAULT_MAX_NEW_TOKENS = 128


def as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def truncate_at(text: str, stops: list[str]) -> str:
    """Cut `text` at the first occurrence of any stop string."""
    cut = len(text)
    for stop in stops:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


class Runner:
    """Left-padded batches from (text, image) pairs, ReFT interventions at the prompt positions, a prefix's cache in
    front, generation with lmms-eval-style settings, and forward passes. `adapter` is what attaching gave (anything
    with `reft` and `prefix`: an `AttachedAdapter`, or a training stage's `Attached`) or None; `model` is the model
    to run (the adapter's, when there is one)."""

    def __init__(self, model: torch.nn.Module, processor, device: torch.device, adapter=None) -> None:
        self.model, self.processor, self.device, self.adapter = model, processor, device, adapter

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def encode(self, contexts, images) -> list[list[int]]:
        """Token ids of each row's full prompt (chat markup, expanded image tokens)."""
        return self.processor.encode([self.processor.prompt(c, img is not None) for c, img in zip(contexts, images)])

    def inputs(self, contexts, images, continuations=None, encoded=None):
        """Left-padded model inputs and each row's prompt length (continuations, if any, follow the prompt);
        `encoded` gives the prompts' ids when the caller has them already."""
        encoded = encoded if encoded is not None else self.encode(contexts, images)
        prompt_lengths = [len(ids) for ids in encoded]
        if continuations is not None:
            encoded = [ids + self.tokenizer(c, add_special_tokens=False)["input_ids"]
                       for ids, c in zip(encoded, continuations)]
        batch = self.processor.pad_left(encoded)
        present = [img for img in images if img is not None]
        if present:
            batch["pixel_values"] = self.processor.pixel_values(present).to(self.model.dtype)
        return batch.to(self.device), prompt_lengths

    def intervening(self, inputs, prompt_lengths: list[int], first_forward_only: bool,
                    offsets: list[int] | None = None):
        """ReFT interventions at this batch's prompt positions (nothing for other adapters); `offsets`: where each
        row's input starts in its prompt, when the rest is in a cache (`ReftAdapter.locations`)."""
        if self.adapter is None or self.adapter.reft is None:
            return contextlib.nullcontext()
        return self.adapter.reft.intervene(inputs["attention_mask"], prompt_lengths, first_forward_only, offsets)

    def generating(self):
        """Decoding steps run in this block: a ReFT adapter with intervene_on="all" intervenes on each generated
        token (nothing for other adapters, or pyreft's prompt-only default)."""
        if self.adapter is None or self.adapter.reft is None:
            return contextlib.nullcontext()
        return self.adapter.reft.generating()

    def generate_kwargs(self, gen: dict, until: list[str]) -> dict:
        """transformers `generate` arguments from lmms-eval's generation kwargs (`gen` is consumed)."""
        temperature = float(gen.pop("temperature", 0) or 0)
        num_beams = int(gen.pop("num_beams", 1) or 1)
        max_new_tokens = int(gen.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        do_sample = as_bool(gen.pop("do_sample", temperature > 0)) and temperature > 0
        top_p = gen.pop("top_p", None)
        kwargs = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample,
                      eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        if do_sample:
            kwargs["temperature"] = temperature
            if top_p is not None:
                kwargs["top_p"] = float(top_p)
        else:  # greedy: no sampling knobs (silences transformers' warnings about unused ones)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        stops = [s for s in until if s and s != self.tokenizer.eos_token]
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        return kwargs

    def new_tokens(self, inputs, prompt_lengths: list[int], kwargs: dict) -> torch.Tensor:
        """The generated ids after each row's prompt, interventions on the prompt forward only."""
        prefix = self.adapter.prefix if self.adapter else None
        with self.intervening(inputs, prompt_lengths, first_forward_only=True):
            out = (prefix or self.model).generate(**inputs, **kwargs)
        return out[:, inputs["input_ids"].shape[1]:]

    def generate(self, inputs, prompt_lengths: list[int], gen: dict, until: list[str]) -> list[str]:
        """Decoded texts, each cut at the first stop string."""
        new = self.new_tokens(inputs, prompt_lengths, self.generate_kwargs(gen, until))
        return [truncate_at(t, until) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def forward(self, inputs, prompt_lengths: list[int], output_hidden_states: bool = False):
        """One forward pass (the model's output), interventions at every intervened position."""
        prefix = self.adapter.prefix if self.adapter else None
        with self.intervening(inputs, prompt_lengths, first_forward_only=False):
            return (prefix.forward if prefix else self.model)(**inputs, output_hidden_states=output_hidden_states)

    def logits(self, inputs, prompt_lengths: list[int]) -> torch.Tensor:
        """Float logits of one forward pass, interventions at every intervened position."""
        return self.forward(inputs, prompt_lengths).logits.float()

    def loglikelihoods(self, requests: list[ContinuationRequest], batch_size: int = 1, share_context: bool = True,
                       max_length: int | None = None) -> Iterator[list[tuple[int, Score]]]:
        """Each request's (log-likelihood of its continuation, whether greedy decoding would produce it), batch by
        batch as computed, as (index in `requests`, score) lists; requests sharing an image and a prompt compute that
        context once unless `share_context` is false (`shared_context.py` says how, and why it is exact)."""
        return shared_context.loglikelihoods(self, requests, batch_size, share_context, max_length)

    def generate_requests(self, requests: list[PromptRequest], batch_size: int, gen: dict, until: list[str],
                          share: bool = True, encoded: list[list[int]] | None = None
                          ) -> Iterator[list[tuple[int, str]]]:
        """Each request's generated text (cut at its first stop string), batch by batch as computed, as (index in
        `requests`, text) lists; requests sharing an image compute it, and the prompt up to its end, once unless
        `share` is false (`shared_prefix.py` says how, when and why it is exact). `encoded`: the prompts' ids, when
        the caller has them."""
        if encoded is None:
            encoded = self.encode([r.context for r in requests], [r.image for r in requests])
        kwargs = self.generate_kwargs(dict(gen), until)
        for batch in shared_prefix.generate(self, requests, encoded, batch_size, kwargs, share):
            texts = self.tokenizer.batch_decode([ids for _, ids in batch], skip_special_tokens=True)
            yield [(index, truncate_at(text, until)) for (index, _), text in zip(batch, texts)]
