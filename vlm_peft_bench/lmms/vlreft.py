"""The lmms-eval model `vlreft`: nanoLLaVA (embedded tiny, a local folder or a Hub id), bare or with an adapter.

    lmms_eval --model vlreft --model_args pretrained=nanollava-tiny --tasks cvbench_mini --batch_size 8

model_args: `pretrained` (default nanollava-tiny), `adapter` (a pyreft, peft or fully fine-tuned folder),
`adapter_type` (overrides detection), `merge_lora` (merge LoRA-style weights before evaluating),
`positions` (ReFT positions, for pyreft folders that do not record them), `device` (default cuda when
available, else cpu), `dtype` (auto | float32 | bfloat16 | float16), `batch_size`, `system_prompt` (default
none), `attn_implementation` (eager | sdpa).

Generation is batched with left padding; requests are sorted by length so that batches pad little, and
results come back in the original order. Several processes (`accelerate launch`) split the requests, as
lmms-eval's own models do.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from accelerate import Accelerator
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from tqdm import tqdm

from vlm_peft_bench.adapters.detect import validate_adapter_arg
from vlm_peft_bench.adapters.loader import attach_adapter, resolve_adapter
from vlm_peft_bench.nanollava.loading import TINY_NAME, load_nanollava

DEFAULT_MAX_NEW_TOKENS = 128


class BadSampleError(ValueError):
    """A request whose document or image cannot be turned into model input."""


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class VLReft(lmms):
    is_simple = True

    def __init__(
        self,
        pretrained: str = TINY_NAME,
        adapter: str | None = None,
        adapter_type: str | None = None,
        merge_lora: bool | str = False,
        positions: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        system_prompt: str | None = None,
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(
                f"vlreft: unknown model_args {sorted(kwargs)}; known: pretrained, adapter, adapter_type, merge_lora, "
                "positions, device, dtype, batch_size, system_prompt, attn_implementation"
            )
        self.batch_size_per_gpu = int(batch_size)
        if self.batch_size_per_gpu < 1:
            raise ValueError(f"vlreft: batch_size must be at least 1, got {batch_size}")
        accelerator = Accelerator()
        if accelerator.num_processes > 1:  # one device per process: cuda:<local rank>, or the CPU
            self._device = accelerator.device
        else:
            self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if adapter:  # checked (and fetched, for a Hub id) before the possibly large base model loads
            adapter = str(resolve_adapter(adapter))
            validate_adapter_arg(adapter, adapter_type)
        loaded = load_nanollava(pretrained, self._device, dtype, system_prompt, attn_implementation)
        self._model = loaded.model
        self.adapter = None
        if adapter:
            self.adapter = attach_adapter(loaded.model, adapter, adapter_type, _as_bool(merge_lora), positions)
            self._model = self.adapter.model
            logger.info(f"vlreft: {self.adapter.kind} adapter {adapter} (sha256 {self.adapter.sha256[:12]})")
        self.processor = loaded.processor
        self.pretrained = pretrained
        self.source = loaded.source
        self.accelerator = accelerator
        self._rank = accelerator.local_process_index if accelerator.num_processes > 1 else 0
        self._world_size = accelerator.num_processes
        if self._world_size > 1 and accelerator.is_local_main_process:
            logger.info(f"vlreft: data parallel over {self._world_size} processes")
        logger.info(f"vlreft: {pretrained} ({loaded.layout} layout, {self.source}) on {self._device}, "
                    f"{self._model.dtype}")

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def _visual(self, doc_to_visual, doc_id: int, task: str, split: str) -> Image.Image | None:
        """The request's one image (or None), with a clear error naming the row when it cannot be read."""
        try:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        except Exception as err:
            raise BadSampleError(
                f"task {task}, split {split}, doc {doc_id}: its image cannot be read ({type(err).__name__}: {err}); "
                "repair or remove that row of the dataset"
            ) from err
        visuals = [v for v in (visuals or []) if v is not None]
        if len(visuals) > 1:
            raise BadSampleError(f"task {task}, doc {doc_id}: {len(visuals)} images, nanoLLaVA takes one per prompt")
        if visuals and not isinstance(visuals[0], Image.Image):
            raise BadSampleError(f"task {task}, doc {doc_id}: expected a PIL image, got {type(visuals[0]).__name__}")
        return visuals[0] if visuals else None

    def _inputs(self, contexts, images, continuations=None):
        """Left-padded model inputs and each row's prompt length (continuations, if any, follow the prompt)."""
        prompts = [self.processor.prompt(c, img is not None) for c, img in zip(contexts, images)]
        encoded = self.processor.encode(prompts)
        prompt_lengths = [len(ids) for ids in encoded]
        if continuations is not None:
            tokenizer = self.processor.tokenizer
            encoded = [ids + tokenizer(c, add_special_tokens=False)["input_ids"]
                       for ids, c in zip(encoded, continuations)]
        batch = self.processor.pad_left(encoded)
        present = [img for img in images if img is not None]
        if present:
            batch["pixel_values"] = self.processor.pixel_values(present).to(self._model.dtype)
        return batch.to(self._device), prompt_lengths

    @torch.inference_mode()
    def generate_until(self, requests: list[Instance]) -> list[str]:
        def by_length(args):
            return -len(self.tokenizer(args[0])["input_ids"]), args[0]

        collator = lmms_utils.Collator([r.args for r in requests], by_length, grouping=True)
        results: list[str] = []
        pbar = tqdm(total=len(requests), disable=self.rank != 0, desc="vlreft generating")
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            contexts, all_kwargs, doc_to_visuals, doc_ids, tasks, splits = zip(*chunk)
            images = [self._visual(f, d, t, s) for f, d, t, s in zip(doc_to_visuals, doc_ids, tasks, splits)]
            gen = dict(all_kwargs[0])
            until = gen.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            texts = self._generate(*self._inputs(contexts, images), gen, until)
            for context, kwargs, text in zip(contexts, all_kwargs, texts):
                self.cache_hook.add_partial("generate_until", (context, kwargs), text)
            results.extend(texts)
            pbar.update(len(chunk))
        pbar.close()
        return collator.get_original(results)

    def _generate(self, inputs, prompt_lengths: list[int], gen: dict, until: list[str]) -> list[str]:
        temperature = float(gen.pop("temperature", 0) or 0)
        num_beams = int(gen.pop("num_beams", 1) or 1)
        max_new_tokens = int(gen.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        do_sample = _as_bool(gen.pop("do_sample", temperature > 0)) and temperature > 0
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
        prefix = self.adapter.prefix if self.adapter else None
        with self._intervening(inputs, prompt_lengths, first_forward_only=True):
            out = (prefix or self._model).generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at(t, until) for t in texts]

    @torch.inference_mode()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="vlreft loglikelihood"):
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            if not isinstance(continuation, str):
                continuation = continuation(self.task_dict[task][split][doc_id])
            image = self._visual(doc_to_visual, doc_id, task, split)
            inputs, prompt_lengths = self._inputs([context], [image], [continuation])
            n_context = prompt_lengths[0]
            prefix = self.adapter.prefix if self.adapter else None
            with self._intervening(inputs, prompt_lengths, first_forward_only=False):
                logits = (prefix.forward if prefix else self._model)(**inputs).logits[0].float()
            target = inputs["input_ids"][0, n_context:]
            if target.numel() == 0:
                raise BadSampleError(f"task {task}, doc {doc_id}: the continuation {continuation!r} has no tokens")
            predicted = logits[n_context - 1:-1]
            logprobs = torch.log_softmax(predicted, dim=-1).gather(1, target[:, None]).squeeze(1)
            greedy = bool((predicted.argmax(-1) == target).all())
            results.append((float(logprobs.sum()), greedy))
            self.cache_hook.add_partial("loglikelihood", (context, continuation), results[-1])
        return results

    def _intervening(self, inputs, prompt_lengths: list[int], first_forward_only: bool):
        """ReFT interventions at this batch's prompt positions (nothing for other adapters)."""
        if self.adapter is None or self.adapter.reft is None:
            return contextlib.nullcontext()
        return self.adapter.reft.intervene(inputs["attention_mask"], prompt_lengths, first_forward_only)

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("vlreft: multi-round generation is not supported (nanoLLaVA is single-turn here)")


def truncate_at(text: str, stops: list[str]) -> str:
    """Cut `text` at the first occurrence of any stop string."""
    cut = len(text)
    for stop in stops:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]
