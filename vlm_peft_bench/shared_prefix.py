"""Generation with shared image prefixes: each image, and the prompt up to the end of its image tokens, run once.

Benchmarks ask several questions of one image (VQAv2: 5.3 per image). A nanoLLaVA prompt is

    [system turn]<|im_start|>user\\n<image x 729>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n

and everything up to the last image token is the same for every question of that image. Requests are grouped by
that prefix: the image's content (a sha256 of its mode, size and pixels: `image_digest`), the prefix's token ids,
and, for a ReFT adapter, the intervened positions that fall inside the prefix. Each group's prefix is run once (the
vision tower and the prefix's decoder pass), in left-padded batches of `batch_size` prefixes, keeping its
key/value cache; then the questions of that batch of prefixes, `batch_size` at a time, each run on a copy of its
prefix's cache rows, its tokens left-padded after the prefix (the pad columns are masked, and position ids count
real tokens only, so a row's positions are those of its whole prompt), and decoded greedily from there
(`nanollava/decoding.py`). A batch's prefix cache is dropped as soon as its last question is answered.

Exact for every adapter, for the same reason as shared contexts (`shared_context.py`): causal attention makes the
prefix's computation independent of what follows it. LoRA (merged or not) and full weights are in the model; a
prefix-tuning adapter's virtual tokens sit in front of the shared prefix's cache; ReFT interventions are applied
at each row's positions counted on its whole prompt, those inside the prefix during the prefix's forward and the
rest during the question's. ReFT positions that depend on the prompt's length (the middle group, or last positions
reaching back into the prefix for a short question) make the prefix's cache depend on the row: such rows share a
prefix only with rows that intervene at the same prefix positions (with `m` positions, in practice, with questions
of the same token length), and otherwise run alone; the image encoding is not shared separately.

Not shared (run as before, through transformers' `generate`): an image asked one question (nothing to share),
requests without an image, and sampling or beam search (whose random draws and beams `generate` defines).
`tests/test_shared_prefix.py` checks greedy answers against the unshared path for every adapter kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from vlm_peft_bench.nanollava.decoding import DecodeSettings, decode
from vlm_peft_bench.nanollava.kv_cache import cache_argument, logits_to_keep_argument, returned_cache, select_rows
from vlm_peft_bench.shared_context import Context, image_digest, run_contexts


@dataclass(frozen=True)
class PromptRequest:
    """One generation request: the user's text and its image (a PIL image, None, or a function returning one, loaded
    when its batch runs); `image_digest`, when given, must be `image_digest(image)`."""

    context: str
    image: Image.Image | None | Callable[[], Image.Image | None] = None
    image_digest: str | None = None

    def load_image(self) -> Image.Image | None:
        return self.image() if callable(self.image) else self.image


@dataclass
class _Question:
    index: int
    ids: list[int]  # the whole prompt
    split: int  # the prefix is ids[:split]


@dataclass
class _Prefix:
    prefix: list[int]
    request: PromptRequest
    prompt_length: int  # of a member (ReFT positions inside the prefix are the same for every member)
    rows: list[_Question] = field(default_factory=list)


def shares(kwargs: dict) -> bool:
    """Whether these `generate` arguments can use shared prefixes: greedy decoding without beams."""
    return not kwargs.get("do_sample") and int(kwargs.get("num_beams", 1) or 1) == 1


def generate(runner, requests: list[PromptRequest], encoded: list[list[int]], batch_size: int, kwargs: dict,
             share: bool = True) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """New token ids of each request (`encoded`: its prompt's ids), batch by batch as computed: lists of (index in
    `requests`, ids). `kwargs` are transformers `generate` arguments (`Runner.generate_kwargs`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    image_id = runner.processor.image_token_id
    groups: dict[tuple, _Prefix] = {}
    alone: list[int] = []
    for index, (request, ids) in enumerate(zip(requests, encoded)):
        if not (share and shares(kwargs)) or request.image is None or image_id not in ids:
            alone.append(index)
            continue
        split = len(ids) - ids[::-1].index(image_id)
        digest = request.image_digest or image_digest(request.load_image())
        reft = runner.adapter.reft if runner.adapter else None
        inside = reft.positions_before(len(ids), split) if reft is not None else None
        key = (digest, tuple(ids[:split]), inside)
        groups.setdefault(key, _Prefix(ids[:split], request, len(ids))).rows.append(_Question(index, ids, split))
    for key in [key for key, group in groups.items() if len(group.rows) == 1]:  # nothing to share
        alone.append(groups.pop(key).rows[0].index)
    yield from _unshared(runner, requests, encoded, sorted(alone), batch_size, kwargs)
    order = sorted(groups.values(), key=lambda g: -len(g.prefix))
    settings = DecodeSettings.from_generate_kwargs(kwargs)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        context = run_contexts(runner, [g.prefix for g in batch], [g.request.load_image() for g in batch],
                               with_cache=True, prompt_lengths=[g.prompt_length for g in batch])
        members = sorted(((g, row) for g, group in enumerate(batch) for row in group.rows),
                         key=lambda m: -(len(m[1].ids) - m[1].split))
        for chunk_start in range(0, len(members), batch_size):
            yield _answer(runner, context, members[chunk_start:chunk_start + batch_size], settings)
        del context  # the prefixes' cache lives no longer than their last question


def _unshared(runner, requests, encoded, indices: list[int], batch_size: int, kwargs: dict):
    """Requests run whole through `Runner.new_tokens` (transformers' `generate`), longest first."""
    order = sorted(indices, key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        inputs, lengths = runner.inputs([None] * len(batch), [requests[i].load_image() for i in batch],
                                        encoded=[encoded[i] for i in batch])
        new = runner.new_tokens(inputs, lengths, dict(kwargs))
        yield list(zip(batch, new))


def _answer(runner, context: Context, chunk: list[tuple[int, _Question]], settings: DecodeSettings
            ) -> list[tuple[int, torch.Tensor]]:
    """Each question of `chunk` ((its prefix's row in `context`, row)) run after a copy of its prefix's cache, then
    decoded."""
    device = context.mask.device
    which = torch.tensor([g for g, _ in chunk], device=device)
    suffixes = [row.ids[row.split:] for _, row in chunk]
    inputs = runner.processor.pad_left(suffixes).to(device)
    mask = inputs["attention_mask"]
    positions = context.next_position[which][:, None] + (mask.cumsum(-1) - 1).clamp(min=0)
    full_mask = torch.cat([context.mask[which], mask], 1)
    cache = {cache_argument(runner.model): select_rows(context.cache, which)}
    keep = logits_to_keep_argument(runner.model)
    if keep:
        cache[keep] = 1
    with runner.intervening(inputs, [len(row.ids) for _, row in chunk], first_forward_only=False,
                            offsets=[row.split for _, row in chunk]):
        out = runner.model(input_ids=inputs["input_ids"], attention_mask=full_mask, position_ids=positions,
                           use_cache=True, **cache)
    with runner.generating():
        new = decode(runner.model, out.logits[:, -1], returned_cache(out), full_mask,
                     context.next_position[which] + mask.sum(-1), settings)
    return [(row.index, new[r]) for r, (_, row) in enumerate(chunk)]
