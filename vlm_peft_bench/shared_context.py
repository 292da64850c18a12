"""Log-likelihoods of continuations after (image, prompt) contexts, batched, each shared context computed once.

lmms-eval's multiple-choice tasks send one log-likelihood request per option, every option with the same context.
Requests with the same image (a sha256 of its pixels, mode and size: content, not the document id) and the same
prompt text form a group; the unshared path runs every request as one sequence, context then continuation, and
pays for the image and the prompt once per option. The shared path runs each group's context once, in left-padded
batches of `batch_size` contexts, keeping its key/value cache and the logits of its last position (those predict
each continuation's first token), then scores each continuation from a copy of its context's rows of that cache,
in batches of `batch_size` continuations. When every continuation of a batch is one token long (the option letters
of `cvbench_mini_mc`), the last context position's logits are all that is needed and no continuation is run.

Exact for every adapter, because the context's computation does not depend on what follows it (causal attention):
LoRA, merged or not, and full weights are in the model's weights; a prefix's cache is in front of the context's
(its positions and mask continue after it, as in `PrefixAdapter.forward`); ReFT intervenes at positions counted on
the prompt, which here is the context (`Runner.intervening` with the context's lengths, as the unshared path
does), so the intervened context cache is the one every continuation of that context would compute, and the
continuation's own positions are never intervened. `tests/test_shared_context.py` checks each adapter kind
against the unshared path (log-likelihoods to 1e-4 absolute in float32, greedy flags identical), and that the
ReFT check would fail were the positions counted on the whole sequence.

Both paths pass position ids counted from each row's first real token, so that left padding does not move a row's
positions (the prefix adapter computes its own).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.nanollava.kv_cache import cache_argument, logits_to_keep_argument, returned_cache, select_rows

Score = tuple[float, bool]  # (sum of the continuation's token log-probabilities, every token the argmax)


class ContinuationError(VlmPeftBenchError, ValueError):
    """A request that cannot be scored; `index` is its position in the list given."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class ContinuationRequest:
    """One log-likelihood request. `image` is a PIL image, None, or a function returning one (loaded when its
    batch runs, so that a long request list does not hold every image); `image_digest`, when given, must be
    `image_digest(image)` (a caller that has hashed the image already saves a second load)."""

    context: str
    continuation: str
    image: Image.Image | None | Callable[[], Image.Image | None] = None
    image_digest: str | None = None

    def load_image(self) -> Image.Image | None:
        return self.image() if callable(self.image) else self.image


def image_digest(image: Image.Image | None) -> str | None:
    """sha256 of an image's mode, size and pixel bytes (None for no image): what decides that two requests share
    an image."""
    if image is None:
        return None
    digest = hashlib.sha256(f"{image.mode} {image.size[0]}x{image.size[1]}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass
class _Row:
    index: int
    context_ids: list[int]
    continuation_ids: list[int]
    request: ContinuationRequest


@dataclass
class _Group:
    context_ids: list[int]
    request: ContinuationRequest  # its first request (the image to load)
    rows: list[_Row] = field(default_factory=list)


@dataclass
class Context:
    """A batch of contexts run once: the last position's logits, the cache, the mask the continuations extend."""

    last_logits: torch.Tensor  # [contexts, vocabulary], float
    cache: Any  # the model's past_key_values (None when no continuation needs it)
    mask: torch.Tensor  # [contexts, prefix + width]
    next_position: torch.Tensor  # [contexts]: the first continuation token's position id


def loglikelihoods(runner, requests: list[ContinuationRequest], batch_size: int, share_context: bool = True,
                   max_length: int | None = None) -> Iterator[list[tuple[int, Score]]]:
    """Scores of `requests` through `runner` (a `Runner`), batch by batch as computed: lists of (index in
    `requests`, score). Every request is tokenized and checked (`max_length`: the most tokens a context and its
    continuation may have) before any model work; a bad one raises `ContinuationError`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rows = _tokenized(runner, requests, max_length)
    yield from (_shared(runner, rows, batch_size) if share_context else _unshared(runner, rows, batch_size))


def _tokenized(runner, requests: list[ContinuationRequest], max_length: int | None) -> list[_Row]:
    contexts: dict[tuple[str, bool], list[int]] = {}
    continuations: dict[str, list[int]] = {}
    rows = []
    for index, request in enumerate(requests):
        with_image = request.image is not None
        if (request.context, with_image) not in contexts:  # tokenizing needs only whether there is an image
            [contexts[request.context, with_image]] = runner.encode([request.context], [request.image])
        if request.continuation not in continuations:
            continuations[request.continuation] = runner.tokenizer(request.continuation,
                                                                   add_special_tokens=False)["input_ids"]
        row = _Row(index, contexts[request.context, with_image], continuations[request.continuation], request)
        total = len(row.context_ids) + len(row.continuation_ids)
        if max_length is not None and total > max_length:
            raise ContinuationError(index, f"prompt and continuation have {total} tokens, the model's context is "
                                           f"{max_length}")
        if not row.continuation_ids:
            raise ContinuationError(index, f"the continuation {request.continuation!r} has no tokens")
        rows.append(row)
    return rows


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _score(predicted: torch.Tensor, target: torch.Tensor) -> Score:
    """`predicted`: the float logits before each target token, [tokens, vocabulary]."""
    logprobs = torch.log_softmax(predicted, dim=-1).gather(1, target[:, None]).squeeze(1)
    return float(logprobs.sum()), bool((predicted.argmax(-1) == target).all())


def run_forward(runner, inputs, prompt_lengths: list[int], keep: int, use_cache: bool,
                offsets: list[int] | None = None):
    """One forward over left-padded rows, interventions at the prompt positions (`offsets`: see
    `ReftAdapter.locations`), logits of the last `keep` positions (all, where the model cannot limit them)."""
    prefix = runner.adapter.prefix if runner.adapter else None
    kwargs = dict(inputs)
    name = logits_to_keep_argument(runner.model)
    if name:
        kwargs[name] = keep
    with runner.intervening(inputs, prompt_lengths, first_forward_only=False, offsets=offsets):
        if prefix is not None:  # its forward sets the positions and its cache
            out = prefix.forward(**kwargs)
        else:
            mask = inputs["attention_mask"]
            out = runner.model(**kwargs, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=use_cache)
    return out, out.logits[:, -keep:].float()


def _unshared(runner, rows: list[_Row], batch_size: int) -> Iterator[list[tuple[int, Score]]]:
    """Each request as one sequence, context then continuation; interventions at the context's positions."""
    order = sorted(rows, key=lambda r: -(len(r.context_ids) + len(r.continuation_ids)))
    for batch in _batches(order, batch_size):
        images = [r.request.load_image() for r in batch]
        inputs, _ = runner.inputs([r.request.context for r in batch], images,
                                  encoded=[r.context_ids + r.continuation_ids for r in batch])
        keep = max(len(r.continuation_ids) for r in batch) + 1
        _, logits = run_forward(runner, inputs, [len(r.context_ids) for r in batch], keep, use_cache=False)
        scores = []
        for b, row in enumerate(batch):
            n = len(row.continuation_ids)
            target = torch.tensor(row.continuation_ids, device=logits.device)
            scores.append((row.index, _score(logits[b, keep - 1 - n:keep - 1], target)))
        yield scores


def _shared(runner, rows: list[_Row], batch_size: int) -> Iterator[list[tuple[int, Score]]]:
    """Contexts grouped by (image pixels, prompt text), each run once; continuations from their context's cache."""
    groups: dict[tuple[str | None, str], _Group] = {}
    for row in rows:
        request = row.request
        digest = request.image_digest
        if digest is None and request.image is not None:
            digest = image_digest(request.load_image())
        key = (digest, request.context)
        groups.setdefault(key, _Group(row.context_ids, request)).rows.append(row)
    order = sorted(groups.values(), key=lambda g: -len(g.context_ids))
    for batch in _batches(order, batch_size):
        members = [(g, row) for g, group in enumerate(batch) for row in group.rows]
        needs_cache = any(len(row.continuation_ids) > 1 for _, row in members)
        context = _run_contexts(runner, batch, needs_cache)
        for chunk in _batches(members, batch_size):
            yield _score_continuations(runner, context, chunk)
        del context  # the cache lives no longer than its batch's continuations


def _run_contexts(runner, batch: list[_Group], needs_cache: bool) -> Context:
    images = [group.request.load_image() for group in batch]
    return run_contexts(runner, [g.context_ids for g in batch], images, needs_cache)


def run_contexts(runner, encoded: list[list[int]], images: list, with_cache: bool,
                 prompt_lengths: list[int] | None = None) -> Context:
    """Contexts (token ids, each with its image or None) run once in one left-padded batch. With `prompt_lengths`,
    each context is the start of a prompt that long, and ReFT intervenes at the positions of the whole prompt that
    fall in it; without, each context is a whole prompt."""
    inputs, lengths = runner.inputs([None] * len(encoded), images, encoded=encoded)
    offsets = None if prompt_lengths is None else [0] * len(encoded)
    out, logits = run_forward(runner, inputs, prompt_lengths or lengths, keep=1, use_cache=with_cache,
                              offsets=offsets)
    mask = inputs["attention_mask"]
    prefix = runner.adapter.prefix if runner.adapter else None
    start = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
    if prefix is not None:
        start += prefix.length
        mask = torch.cat([prefix.ones(mask.shape[0], mask), mask], 1)
    return Context(logits[:, -1], returned_cache(out) if with_cache else None, mask,
                   start + inputs["attention_mask"].sum(-1))


def _score_continuations(runner, context: Context, chunk: list[tuple[int, _Row]]) -> list[tuple[int, Score]]:
    """Scores of continuations, each after its context (`chunk`: (context's row in the batch, request))."""
    longest = max(len(row.continuation_ids) for _, row in chunk)
    logits = None
    if longest > 1:
        logits = _continuation_logits(runner, context, chunk, longest)
    scores = []
    for r, (g, row) in enumerate(chunk):
        n = len(row.continuation_ids)
        predicted = context.last_logits[g:g + 1]
        if n > 1:
            predicted = torch.cat([predicted, logits[r, :n - 1]])
        target = torch.tensor(row.continuation_ids, device=predicted.device)
        scores.append((row.index, _score(predicted, target)))
    return scores


def _continuation_logits(runner, context: Context, chunk: list[tuple[int, _Row]], width: int) -> torch.Tensor:
    """Float logits of each continuation (right-padded to `width` tokens) run on its context's rows of the cache."""
    device = context.mask.device
    which = torch.tensor([g for g, _ in chunk], device=device)
    ids = torch.full((len(chunk), width), runner.tokenizer.pad_token_id, dtype=torch.long)
    own = torch.zeros((len(chunk), width), dtype=context.mask.dtype)
    for r, (_, row) in enumerate(chunk):
        ids[r, :len(row.continuation_ids)] = torch.tensor(row.continuation_ids)
        own[r, :len(row.continuation_ids)] = 1
    positions = context.next_position[which][:, None] + torch.arange(width, device=device)
    cache = {cache_argument(runner.model): select_rows(context.cache, which)}
    out = runner.model(input_ids=ids.to(device), attention_mask=torch.cat([context.mask[which], own.to(device)], 1),
                       position_ids=positions, use_cache=True, **cache)
    return out.logits.float()
