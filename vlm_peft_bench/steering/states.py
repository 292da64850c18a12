"""Hidden states of the language model's layers, read while prompts run through a `Runner`.

A layer's output is read where the next step receives it (the next layer's input, or the final norm's for the last
layer), with forward pre-hooks: those run after every hook on the layer itself, so the states of a model carrying
ReFT interventions are the intervened ones, as the following layers see them. Prompts run with whatever adapter
the runner carries (left-padded batches; positions counted on each prompt as ReFT counts them).

`prompt_states` sums the states at chosen prompt positions over many prompts (shift and contrastive vectors);
`last_states` keeps each input's state at its last token (in-context vectors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from vlm_peft_bench.adapters.positions import position_groups
from vlm_peft_bench.adapters.reft_folder import language_model


class StateSums:
    """Per layer: the sum of the states seen and how many (float64, so that means over thousands stay exact)."""

    def __init__(self, layers: Sequence[int], hidden: int) -> None:
        self.layers = list(layers)
        self.sums = torch.zeros(len(self.layers), hidden, dtype=torch.float64)
        self.count = 0

    def means(self) -> torch.Tensor:
        if not self.count:
            raise ValueError("no states were read (no prompts, or no positions in them)")
        return (self.sums / self.count).float()


def _readers(model: torch.nn.Module, layers: Sequence[int]) -> list[torch.nn.Module]:
    """The modules whose input is layer `i`'s output, one per requested layer."""
    lm = language_model(model)
    n = len(lm.layers)
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ValueError(f"layers {bad}: the model has layers 0..{n - 1}")
    return [lm.layers[i + 1] if i + 1 < n else lm.norm for i in layers]


@contextlib.contextmanager
def _reading(model: torch.nn.Module, layers: Sequence[int]):
    """Within the block, the dict it yields holds each requested layer's output of the last forward (by index)."""
    captured: dict[int, torch.Tensor] = {}

    def reader(k: int):
        def hook(_module, args, kwargs):
            captured[k] = args[0] if args else kwargs["hidden_states"]
        return hook

    handles = [module.register_forward_pre_hook(reader(k), with_kwargs=True)
               for k, module in enumerate(_readers(model, layers))]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def _batches(runner, texts, images, continuations, batch_size: int, description: str | None,
             read: Callable[[dict, dict, list[int]], None], layers: Sequence[int]) -> None:
    """Run every prompt (with its continuation, if any) and hand each batch's states to `read(states, inputs,
    prompt lengths)`."""
    with _reading(runner.model, layers) as captured:
        for start in tqdm(range(0, len(texts), batch_size), desc=description or "hidden states", unit="batch",
                          disable=description is None):
            stop = start + batch_size
            inputs, lengths = runner.inputs(list(texts[start:stop]), list(images[start:stop]),
                                            None if continuations is None else list(continuations[start:stop]))
            with torch.inference_mode():
                runner.forward(inputs, lengths)
            read(captured, inputs, lengths)
            captured.clear()


def prompt_states(runner, texts: Sequence[str], images: Sequence, layers: Sequence[int], positions: str,
                  batch_size: int = 8, description: str | None = None) -> StateSums:
    """Sum of each layer's output at each prompt's `positions` (pyreft notation, `all` for every token), over all
    prompts; `images[i]` may be None (a prompt without an image)."""
    sums = StateSums(layers, language_model(runner.model).embed_tokens.embedding_dim)

    def read(captured: dict, inputs: dict, lengths: list[int]) -> None:
        width = inputs["input_ids"].shape[1]
        rows, cols = [], []
        for b, n in enumerate(lengths):
            picked = sorted({p for group in position_groups(positions, n) for p in group})
            rows += [b] * len(picked)
            cols += [width - n + p for p in picked]
        for k in range(len(layers)):
            sums.sums[k] += captured[k][rows, cols].double().sum(0).cpu()
        sums.count += len(rows)

    _batches(runner, texts, images, None, batch_size, description, read, layers)
    return sums


def last_states(runner, texts: Sequence[str], images: Sequence, layers: Sequence[int],
                continuations: Sequence[str] | None = None, batch_size: int = 8,
                description: str | None = None) -> torch.Tensor:
    """[inputs, layers, hidden]: each layer's output at each input's last token (the prompt's, or its
    continuation's when given), float32 on the CPU."""
    out: list[torch.Tensor] = []

    def read(captured: dict, inputs: dict, lengths: list[int]) -> None:
        last = inputs["input_ids"].shape[1] - 1  # left padding: every row ends at the last column
        out.append(torch.stack([captured[k][:, last].float().cpu() for k in range(len(layers))], 1))

    _batches(runner, texts, images, continuations, batch_size, description, read, layers)
    return torch.cat(out)
