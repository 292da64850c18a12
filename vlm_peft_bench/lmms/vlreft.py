"""The lmms-eval model `vlreft`: nanoLLaVA (embedded tiny, a local folder or a Hub id), bare or with an adapter.

    lmms_eval --model vlreft --model_args pretrained=nanollava-tiny --tasks cvbench_mini --batch_size 8

model_args: `pretrained` (default nanollava-tiny), `adapter` (a pyreft, peft or fully fine-tuned folder),
`adapter_type` (the saved format expected: pyreft, peft, pt-lora or full; checked against the files),
`merge_lora` (merge LoRA-style weights before evaluating), `positions` (ReFT positions, for pyreft folders that
do not record them), `alpha` (a steering vector's strength: alpha, or an in-context vector's lambda; default the
one it was saved with), `device` (default cuda when available, else cpu), `dtype` (auto | float32 | bfloat16 |
float16), `batch_size`, `system_prompt` (default none), `attn_implementation` (eager | sdpa), `answer_log` (a
folder for the per-sample answer log that lets a killed run resume; our `lmms_eval` sets
`<output_path>/vlreft_answers` unless given `--no_resume`), `share_context` (default true: requests with the
same image compute it once: generation shares the image and the prompt up to its end
(`vlm_peft_bench/shared_prefix.py`), and log-likelihood requests with the same image and prompt, as a
multiple-choice task's options, share that context (`vlm_peft_bench/shared_context.py`); false runs every request
whole; the answer log's identity and the results' provenance record it).

Generation and log-likelihoods are batched with left padding (`batch_size` prompts, or shared prefixes or contexts
and then what follows them); requests are sorted by length so that batches pad little, and results come back in
the original order. Several processes (`accelerate launch`, `torchrun`) split the requests, as lmms-eval's own
models do.

A request that cannot be answered but does not invalidate the run (a prompt longer than the model's context) is
answered with the empty string, which its task scores as wrong, and recorded as a per-sample failure, as is an
empty generation; both are logged, kept in the answer log, and listed in the results file's `vlm_peft_bench`
block by our `lmms_eval`.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from tqdm import tqdm

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.lmms.answer_log import Answer, AnswerLog, failure_list, record_failures, request_key, run_settings
from vlm_peft_bench.methods.attach import attach_adapter, resolve_adapter
from vlm_peft_bench.methods.registry import family_for_folder
from vlm_peft_bench.nanollava.loading import TINY_NAME, load_nanollava
from vlm_peft_bench.provenance import combined_hash, folder_hashes
from vlm_peft_bench.runner import Runner, as_bool
from vlm_peft_bench.shared_context import ContinuationError, ContinuationRequest, image_digest
from vlm_peft_bench.shared_prefix import PromptRequest


class BadSampleError(VlmPeftBenchError, ValueError):
    """A request whose document or image cannot be turned into model input."""


def process_rank(accelerator: Accelerator) -> tuple[int, int]:
    """(global rank, world size) of this process: accelerate's when it set up the processes, else torchrun's
    environment. lmms-eval shards requests by RANK / WORLD_SIZE, and accelerate builds no process group from them
    on CPUs; the rank names this process's answer log."""
    if accelerator.num_processes > 1:
        return accelerator.process_index, accelerator.num_processes
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)


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
        answer_log: str | None = None,
        share_context: bool | str = True,
        alpha: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(
                f"vlreft: unknown model_args {sorted(kwargs)}; known: pretrained, adapter, adapter_type, merge_lora, "
                "positions, device, dtype, batch_size, system_prompt, attn_implementation, answer_log, share_context, "
                "alpha"
            )
        strength = None if alpha in (None, "") else float(alpha)
        self.batch_size_per_gpu = int(batch_size)
        self.share_context = as_bool(share_context)
        if self.batch_size_per_gpu < 1:
            raise ValueError(f"vlreft: batch_size must be at least 1, got {batch_size}")
        accelerator = Accelerator()
        if accelerator.num_processes > 1:  # one device per process: cuda:<local rank>, or the CPU
            self._device = accelerator.device
        elif device is None and torch.cuda.is_available():  # several torchrun processes: one GPU each
            self._device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
        else:
            self._device = torch.device(device or "cpu")
        if adapter:  # checked (and fetched, for a Hub id) before the possibly large base model loads
            adapter = str(resolve_adapter(adapter))
            family_for_folder(adapter, adapter_type)
        loaded = load_nanollava(pretrained, self._device, dtype, system_prompt, attn_implementation)
        self._model = loaded.model
        self.adapter = None
        if adapter:
            self.adapter = attach_adapter(loaded.model, adapter, adapter_type, as_bool(merge_lora), positions,
                                          strength)
            self._model = self.adapter.model
            logger.info(f"vlreft: {self.adapter.method} adapter ({self.adapter.kind} format) {adapter} "
                        f"(sha256 {self.adapter.sha256[:12]})")
        self.processor = loaded.processor
        self.runner = Runner(self._model, self.processor, self._device, self.adapter)
        self.pretrained = pretrained
        self.source = loaded.source
        self.accelerator = accelerator
        self._rank, self._world_size = process_rank(accelerator)
        if self._world_size > 1 and self._rank == 0:
            logger.info(f"vlreft: data parallel over {self._world_size} processes")
        logger.info(f"vlreft: {pretrained} ({loaded.layout} layout, {self.source}) on {self._device}, "
                    f"{self._model.dtype}")
        self.context_length = int(loaded.model.config.text_config.max_position_embeddings)
        settings = run_settings(answer_log)
        self.failures: list[Answer] = []  # this model's per-sample failures (answers read back on resume included)
        self.failures_file = settings.failures_file  # where our `lmms_eval` reads them back for the results file
        self.answer_log = None
        if settings.folder is not None:
            identity = {
                "model_hash": combined_hash(folder_hashes(Path(self.source))),
                "adapter_sha256": self.adapter.sha256 if self.adapter else None,
                "adapter_type": adapter_type, "merge_lora": as_bool(merge_lora), "positions": positions,
                "dtype": str(self._model.dtype), "device": self._device.type, "batch_size": self.batch_size_per_gpu,
                "system_prompt": system_prompt, "attn_implementation": attn_implementation,
                "share_context": self.share_context, "run": settings.salt,
                **({"alpha": strength} if strength is not None else {}),
            }
            self.answer_log = AnswerLog(settings.folder, identity, self._rank)
            logger.info(f"vlreft: answer log {self.answer_log.path} ({len(self.answer_log.answers)} answers "
                        "already there)")

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

    def _key(self, request: Instance) -> str:
        task, split, doc_id = request.task_name, request.args[-1], request.doc_id
        dataset = self.task_dict.get(task, {}).get(split) if isinstance(self.task_dict.get(task), dict) else None
        gen_kwargs = next((a for a in request.args if isinstance(a, dict)), None)
        continuation = request.args[1] if request.request_type == "loglikelihood" else None
        return request_key(request.request_type, task, split, doc_id, getattr(dataset, "_fingerprint", None),
                           request.args[0], gen_kwargs, continuation if isinstance(continuation, str) else None)

    def _resume(self, requests: list[Instance], what: str) -> tuple[dict[int, Any], list[str | None]]:
        """Answers already in the answer log, by request position, and every request's key (None without a log)."""
        if self.answer_log is None:
            return {}, [None] * len(requests)
        keys = [self._key(r) for r in requests]
        found = {i: self.answer_log.get(k) for i, k in enumerate(keys) if self.answer_log.get(k) is not None}
        self._note_failures([a for a in found.values() if a.failure])
        done = {i: a.answer for i, a in found.items()}
        if done:
            logger.info(f"vlreft: resuming: {len(done)} of {len(requests)} {what} answers read from "
                        f"{self.answer_log.path.parent}; computing the other {len(requests) - len(done)}")
        return done, keys

    def _record(self, answers: list[Answer]) -> None:
        failures = [a for a in answers if a.failure]
        for answer in failures:
            logger.warning(f"vlreft: task {answer.task}, doc {answer.doc_id}: {answer.failure}")
        self._note_failures(failures)
        if self.answer_log is not None:
            self.answer_log.append(answers)

    def _note_failures(self, failures: list[Answer]) -> None:
        self.failures.extend(failures)
        if self.failures_file is not None:
            record_failures(self.failures_file, failures)

    def recorded_failures(self) -> list[dict]:
        """This model's per-sample failures so far, one {"task", "doc_id", "failure"} per request."""
        return failure_list(self.failures)

    @torch.inference_mode()
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Requests with the same generation settings go to the runner in one list, which batches them and runs
        each image, with the prompt up to its end, once unless share_context=false; answers are logged batch by
        batch. A prompt longer than the model's context is answered with the empty string and recorded as a
        failure, as is an empty generation."""
        done, keys = self._resume(requests, "generation")
        results: dict[int, str] = dict(done)
        by_settings: dict[str, list[int]] = {}
        for i in range(len(requests)):
            if i not in done:
                by_settings.setdefault(repr(sorted(requests[i].args[1].items())), []).append(i)
        with tqdm(total=len(requests), initial=len(done), disable=self.rank != 0, desc="vlreft generating") as pbar:
            for todo in by_settings.values():
                gen = dict(requests[todo[0]].args[1])
                until = gen.pop("until", None) or []
                until = [until] if isinstance(until, str) else list(until)
                items = self._prompt_requests([requests[i] for i in todo])
                encoded = self.runner.encode([r.context for r in items], [r.image for r in items])
                too_long = [k for k, ids in enumerate(encoded) if len(ids) >= self.context_length]
                if too_long:
                    self._answer(requests, keys, results, [(todo[k], "", self._too_long(len(encoded[k])))
                                                          for k in too_long])
                    pbar.update(len(too_long))
                fits = sorted(set(range(len(todo))) - set(too_long))
                batches = self.runner.generate_requests([items[k] for k in fits], self.batch_size, gen, until,
                                                        self.share_context, [encoded[k] for k in fits])
                for batch in batches:
                    self._answer(requests, keys, results, [
                        (todo[fits[k]], text, None if text.strip() else "empty generation (scored as wrong)")
                        for k, text in batch])
                    pbar.update(len(batch))
        return [results[i] for i in range(len(requests))]

    def _too_long(self, n: int) -> str:
        return (f"prompt of {n} tokens does not fit the model's context of {self.context_length} tokens; answered "
                "with the empty string (scored as wrong)")

    def _answer(self, requests: list[Instance], keys: list[str | None], results: dict[int, str],
                answers: list[tuple[int, str, str | None]]) -> None:
        """Generated texts ((request position, text, failure or None)) kept, cached and logged."""
        logged = []
        for pos, text, failure in answers:
            request = requests[pos]
            results[pos] = text
            self.cache_hook.add_partial("generate_until", (request.args[0], request.args[1]), text)
            logged.append(Answer(keys[pos], "generate_until", request.task_name, request.doc_id, text, failure))
        self._record(logged)

    def _prompt_requests(self, requests: list[Instance]) -> list[PromptRequest]:
        """The runner's generation requests (see `_image_sources`)."""
        return [PromptRequest(r.args[0], image, digest) for r, (image, digest) in zip(requests,
                                                                                      self._image_sources(requests))]

    @torch.inference_mode()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Requests go to the runner in one list, which batches them and computes each shared context (same image
        pixels, same prompt) once unless share_context=false; answers are logged batch by batch."""
        done, keys = self._resume(requests, "loglikelihood")
        results: dict[int, tuple[float, bool]] = {i: (float(a[0]), bool(a[1])) for i, a in done.items()}
        todo = [i for i in range(len(requests)) if i not in done]
        items = self._continuation_requests([requests[i] for i in todo])
        scoring = self.runner.loglikelihoods(items, self.batch_size, self.share_context, self.context_length)
        with tqdm(total=len(requests), initial=len(done), disable=self.rank != 0, desc="vlreft loglikelihood") as pbar:
            try:
                for batch in scoring:
                    answers = []
                    for index, score in batch:
                        pos, request = todo[index], requests[todo[index]]
                        results[pos] = score
                        self.cache_hook.add_partial("loglikelihood", (items[index].context, items[index].continuation),
                                                    score)
                        answers.append(Answer(keys[pos], "loglikelihood", request.task_name, request.doc_id,
                                              list(score)))
                    self._record(answers)
                    pbar.update(len(batch))
            except ContinuationError as err:
                request = requests[todo[err.index]]
                raise BadSampleError(f"task {request.task_name}, doc {request.doc_id}: {err}") from err
        return [results[i] for i in range(len(requests))]

    def _continuation_requests(self, requests: list[Instance]) -> list[ContinuationRequest]:
        """The runner's log-likelihood requests, continuations resolved (see `_image_sources`)."""
        out = []
        for request, (image, digest) in zip(requests, self._image_sources(requests)):
            context, continuation, _, doc_id, task, split = request.args
            if not isinstance(continuation, str):
                continuation = continuation(self.task_dict[task][split][doc_id])
            out.append(ContinuationRequest(context, continuation, image, digest))
        return out

    def _image_sources(self, requests: list[Instance]) -> list[tuple[Any, str | None]]:
        """Each request's image as a loader (None without an image) and its digest: every document's image is read
        and hashed once (its pixels decide the sharing), then read again only when its batch runs, so that a long
        request list does not hold every image."""
        digests: dict[tuple, str | None] = {}
        out = []
        for request in requests:
            _, _, doc_to_visual, doc_id, task, split = request.args
            doc = (task, split, doc_id, doc_to_visual)
            if doc not in digests:
                digests[doc] = image_digest(self._visual(doc_to_visual, doc_id, task, split))
            image = None if digests[doc] is None else partial(self._visual, doc_to_visual, doc_id, task, split)
            out.append((image, digests[doc]))
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("vlreft: multi-round generation is not supported (nanoLLaVA is single-turn here)")

