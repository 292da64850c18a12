"""A per-sample log of finished answers, so that a killed run restarts without losing or recomputing them.

Every answer `vlreft` produces is appended to a jsonlines file (one line per request, flushed and fsynced per
batch) as soon as its batch finishes. A restarted run with the same model, settings and output path reads the
log, serves the requests it already answered from it, and generates only the rest.

Layout, under the answer-log folder (`<output_path>/vlreft_answers/` when run through our `lmms_eval`)::

    answers-<model fingerprint, 16 hex>-rank<r>.jsonl

The first line of each file is a header naming the schema and the model's identity; each further line is one
answer::

    {"schema": "vlm-peft-bench/answers", "version": 1, "model": {...}}
    {"key": "<sha256>", "type": "generate_until", "task": "cvbench_mini", "doc_id": 3, "answer": "(B)",
     "failure": null}

The fingerprint covers everything that changes answers: the base model's file hashes, the adapter's hash, the
model arguments (dtype, device type, batch size, merge_lora, positions, system prompt, attention) and the run's
seed. A request's key covers the task, split, document, its dataset's fingerprint, the prompt and the
generation settings. A different model or setting therefore writes a different file and never reuses another's
answers. Each process of a multi-process run writes its own file and reads all of them.

A run killed mid-write leaves a partial last line; it is dropped (that one answer is recomputed) and reported.
A damaged line anywhere else, or a file from another schema version, stops the run with an error naming the
file and line: nothing in the file is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonlines
from loguru import logger

from vlm_peft_bench.errors import VlmPeftBenchError

SCHEMA = "vlm-peft-bench/answers"
VERSION = 1
# How our `lmms_eval` hands its run settings to the `vlreft` model that lmms-eval builds from --model_args:
# only `set_run_settings` writes these variables and only `run_settings` reads them.
_ENV = {"folder": "VLM_PEFT_BENCH_ANSWER_LOG", "salt": "VLM_PEFT_BENCH_ANSWER_LOG_SALT",
        "failures_file": "VLM_PEFT_BENCH_FAILURES_FILE"}


class AnswerLogError(VlmPeftBenchError, ValueError):
    """An answer log that cannot be trusted (damaged line, other schema version)."""


@dataclass(frozen=True)
class Answer:
    key: str
    type: str
    task: str
    doc_id: int | str
    answer: Any  # generated text, or [logprob, is_greedy] for loglikelihood
    failure: str | None = None

    def record(self) -> dict:
        return {"key": self.key, "type": self.type, "task": self.task, "doc_id": self.doc_id,
                "answer": self.answer, "failure": self.failure}


def _dumps(value: dict) -> str:
    """One line of the log (header or answer): keys sorted, text as written, anything else as str."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def fingerprint(identity: dict) -> str:
    """sha256 over a JSON-able description of the model and its settings."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def request_key(request_type: str, task: str, split: str, doc_id: int | str, dataset_fingerprint: str | None,
                context: str, gen_kwargs: dict | None, continuation: str | None = None) -> str:
    """sha256 identifying one request's input: task, document, its dataset's content, prompt and settings."""
    material = [request_type, task, split, doc_id, dataset_fingerprint, context,
                json.dumps(gen_kwargs or {}, sort_keys=True, default=str), continuation]
    return hashlib.sha256(json.dumps(material, default=str).encode()).hexdigest()


class AnswerLog:
    """The answers of one model identity in `folder`: read all ranks' files, append to this rank's."""

    def __init__(self, folder: Path, identity: dict, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.identity = identity
        self.fingerprint = fingerprint(identity)[:16]
        self.path = self.folder / f"answers-{self.fingerprint}-rank{rank}.jsonl"
        self.answers: dict[str, Answer] = {}
        self.dropped_partial = 0
        for path in sorted(self.folder.glob(f"answers-{self.fingerprint}-rank*.jsonl")):
            self._read(path)
        if self.path.exists() and self.path.stat().st_size:
            self._repair_tail(self.path)
        self._file = None

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers.values() if a.failure]

    def get(self, key: str) -> Answer | None:
        return self.answers.get(key)

    def append(self, answers: Iterable[Answer]) -> None:
        """Append finished answers and make them durable (flush + fsync) before returning."""
        answers = list(answers)
        if not answers:
            return
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", encoding="utf-8")
            self._writer = jsonlines.Writer(self._file, dumps=_dumps)
            if new:
                self._writer.write({"schema": SCHEMA, "version": VERSION, "model": self.identity})
        for answer in answers:
            self._writer.write(answer.record())
            self.answers[answer.key] = answer
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._writer.close()  # leaves the file to us (jsonlines closes only files it opened)
            self._file.close()
            self._file = None

    def _read(self, path: Path) -> None:
        data = path.read_bytes()
        lines = data.split(b"\n")
        partial_tail = not data.endswith(b"\n") and data != b""
        reader = jsonlines.Reader(lines)
        for number, line in enumerate(lines, start=1):
            try:
                record = reader.read(type=dict)  # this line, as jsonlines parses it
            except jsonlines.InvalidLineError as err:
                if not line.strip():
                    continue
                if number == len(lines) and partial_tail:  # the line being written when the run was killed
                    self.dropped_partial += 1
                    logger.warning(f"vlreft: {path}: line {number} is incomplete (the run was stopped while "
                                   "writing it); that one answer will be generated again")
                    continue
                why = err.__cause__ or "not a JSON object"
                raise AnswerLogError(
                    f"{path}, line {number}: not a valid answer record ({why}). The file is damaged; move it "
                    "away to start this model's answers afresh, or restore it from a copy"
                ) from err
            if number == 1:
                self._check_header(path, record)
                continue
            try:
                answer = Answer(record["key"], record["type"], record["task"], record["doc_id"], record["answer"],
                                record.get("failure"))
            except (KeyError, TypeError) as err:
                raise AnswerLogError(f"{path}, line {number}: answer record lacks field {err}") from err
            self.answers[answer.key] = answer

    def _check_header(self, path: Path, header: dict) -> None:
        if header.get("schema") != SCHEMA or header.get("version") != VERSION:
            found = f"{header.get('schema')!r} version {header.get('version')!r}"
            raise AnswerLogError(
                f"{path}, line 1: answer log of schema {found}, this vlm-peft-bench reads {SCHEMA!r} version "
                f"{VERSION}. Use another --output_path, or move the file away (its answers will be recomputed)"
            )

    def _repair_tail(self, path: Path) -> None:
        """Cut a partial last line off this rank's file, so that appended answers start on a line of their own."""
        with open(path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)


@dataclass(frozen=True)
class RunSettings:
    """What our `lmms_eval` tells the `vlreft` model beyond its model_args.

    folder: the answer-log folder (None: no answer log, unless the `answer_log` model argument names one).
    salt: run settings outside the model's arguments that change answers (the --seed); part of the fingerprint.
    failures_file: where the model records this run's per-sample failures, which our `lmms_eval` reads back into
    the results file's `vlm_peft_bench.failures` (None: not recorded).
    """

    folder: Path | None = None
    salt: str = ""
    failures_file: Path | None = None


def set_run_settings(settings: RunSettings) -> None:
    """Hand `settings` to the `vlreft` models this process builds from now on (through the environment, the one
    way into a model lmms-eval constructs; a None or empty value removes its variable)."""
    for field, name in _ENV.items():
        value = getattr(settings, field)
        if value:
            os.environ[name] = str(value)
        else:
            os.environ.pop(name, None)


def run_settings(answer_log: str | None = None) -> RunSettings:
    """The settings `set_run_settings` handed over; an explicit `answer_log` model argument names the folder."""
    folder = answer_log or os.environ.get(_ENV["folder"])
    failures_file = os.environ.get(_ENV["failures_file"])
    return RunSettings(Path(folder) if folder else None, os.environ.get(_ENV["salt"], ""),
                       Path(failures_file) if failures_file else None)


def record_failures(path: Path, failures: Iterable[Answer]) -> None:
    """Append failed answers to `path`, one answer record per line (as in the answer log)."""
    failures = list(failures)
    if failures:
        with jsonlines.open(path, mode="a", dumps=_dumps) as writer:
            writer.write_all(answer.record() for answer in failures)


def read_failures(path: Path) -> list[Answer]:
    """The failed answers `record_failures` wrote to `path` ([] when it wrote none)."""
    if not path.is_file():
        return []
    with jsonlines.open(path) as reader:
        records = list(reader.iter(type=dict, skip_empty=True))
    return [Answer(r["key"], r["type"], r["task"], r["doc_id"], r["answer"], r["failure"]) for r in records]


def failure_list(failures: Iterable[Answer]) -> list[dict]:
    """One {"task", "doc_id", "failure"} per failed request (an answer read back on resume counts once), sorted."""
    seen = {(a.task, str(a.doc_id), a.key): {"task": a.task, "doc_id": a.doc_id, "failure": a.failure}
            for a in failures if a.failure}
    return sorted(seen.values(), key=lambda f: (f["task"], str(f["doc_id"])))
