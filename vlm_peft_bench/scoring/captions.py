"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE) with pycocoevalcap 1.2's scorers, offline.

`caption_scores` gives the numbers `COCOEvalCap.evaluate()` would give (same PTB tokenization, same scorer code),
without its problems here: COCOEvalCap builds SPICE first, which downloads CoreNLP and so fails offline; its PTB
tokenizer writes temp files into site-packages; and it runs the scorers one after another. Here:

- PTB tokenization runs the same Java command and the same punctuation filter as pycocoevalcap's PTBTokenizer,
  on a temp file in a temp folder, for predictions and references in one JVM.
- The METEOR JVM starts before tokenization (its ~6-16 s start-up overlaps it) and is fed through a pipelined
  version of pycocoevalcap's protocol (the same SCORE / EVAL lines, the same jar and flags), in a thread, while
  BLEU, ROUGE-L and CIDEr-D run in the calling thread. SPICE, when available, runs as its own Java process.
  Each Java program runs once per call and is always closed.
- Every metric is computed once over the whole set: CIDEr-D's IDF comes from the set being scored.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycocoevalcap
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

from vlm_peft_bench.scoring import spice as spice_module
from vlm_peft_bench.scoring.caption_inputs import check_caption_inputs

CAPTION_METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
_BLEU = CAPTION_METRICS[:4]

_PACKAGE = Path(next(iter(pycocoevalcap.__path__)))
PTB_JAR = _PACKAGE / "tokenizer" / "stanford-corenlp-3.4.1.jar"
METEOR_JAR = _PACKAGE / "meteor" / "meteor-1.5.jar"

# pycocoevalcap replaces only "\n" before writing one caption per line, but the PTB tokenizer also breaks lines at
# these, which would shift every later caption onto the wrong id. A space is what "\n" gets, so we give them that.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\u2028\u2029]")


def spice_status() -> str | None:
    """None when `caption_scores` can compute SPICE here; else the "SPICE unavailable: ..." reason (what to do)."""
    return spice_module.spice_unavailable_reason()


@dataclass(frozen=True)
class CaptionReport:
    """Corpus scores, and the per-item scores of the metrics whose corpus score is their plain mean (SPICE: the
    mean of independent per-image F-scores, so resampling items and averaging re-scores exactly)."""

    scores: dict[str, float]
    per_item: dict[str, dict[Any, float]] = field(default_factory=dict)  # metric -> {caller's id: score}


def caption_scores(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    metrics: Iterable[str] | None = None,
    tokenize: bool = True,
) -> dict[str, float]:
    """Corpus caption metrics on the COCO scale (fractions; CIDEr-D is around 1 for good captions).

    `predictions` maps an id to one caption, `references` the same ids to one or more reference captions.
    `metrics` picks among CAPTION_METRICS (default: all). With `tokenize=True` both sides go through pycocoevalcap's
    PTB tokenizer (lower-cased, punctuation removed), as COCOEvalCap does; with `tokenize=False` the text is scored
    as whitespace-separated tokens as given (runs of whitespace, newlines included, count as one separator).

    Returns {metric: score} for the requested metrics. SPICE needs Stanford CoreNLP 3.6.0 (see `spice.py`): when it
    is requested but unavailable here, the result simply has no "SPICE" key and nothing is raised; `spice_status()`
    returns the reason to report. Once available, a SPICE run that fails raises RuntimeError like any other metric.
    An empty prediction is allowed (it scores what the metrics give it, 0 for all but degenerate cases).
    """
    return caption_report(predictions, references, metrics, tokenize).scores


def caption_report(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    metrics: Iterable[str] | None = None,
    tokenize: bool = True,
) -> CaptionReport:
    """`caption_scores`, keeping SPICE's per-image scores (`per_item["SPICE"]`, under the given ids) when it ran."""
    wanted = _check_metrics(metrics)
    ids = check_caption_inputs(predictions, references)
    hyps = [predictions[i] for i in ids]
    refs = [list(references[i]) for i in ids]
    run_spice = "SPICE" in wanted and spice_status() is None
    if not run_spice and wanted == {"SPICE"}:
        return CaptionReport({})
    scores: dict[str, float] = {}
    per_item: dict[str, dict[Any, float]] = {}
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="meteor"))
        meteor = stack.enter_context(MeteorProcess()) if "METEOR" in wanted else None
        hyps, refs = _prepare(hyps, refs, tokenize)
        meteor_future = pool.submit(meteor.score, hyps, refs) if meteor else None
        spice_job = None
        if run_spice:
            spice_job = stack.enter_context(spice_module.SpiceJob(hyps, refs))
        scores.update(_python_metrics(hyps, refs, wanted))
        if meteor_future is not None:
            scores["METEOR"] = meteor_future.result()[0]
        if spice_job is not None:
            spice = spice_job.result()  # its image ids are the positions of the captions given
            scores["SPICE"] = spice.score
            per_item["SPICE"] = {item: float(spice.per_image[position]) for position, item in enumerate(ids)}
    return CaptionReport({name: float(scores[name]) for name in CAPTION_METRICS if name in scores}, per_item)


def _check_metrics(metrics: Iterable[str] | None) -> set[str]:
    if metrics is None:
        return set(CAPTION_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    wanted = list(metrics)
    unknown = [m for m in wanted if m not in CAPTION_METRICS]
    if unknown:
        raise ValueError(f"unknown caption metric(s) {unknown}; valid names: {', '.join(CAPTION_METRICS)}")
    if not wanted:
        raise ValueError(f"no caption metric requested; valid names: {', '.join(CAPTION_METRICS)}")
    return set(wanted)


def _prepare(hyps: list[str], refs: list[list[str]], tokenize: bool) -> tuple[list[str], list[list[str]]]:
    if not tokenize:
        return [" ".join(h.split()) for h in hyps], [[" ".join(r.split()) for r in rs] for rs in refs]
    flat = [r for rs in refs for r in rs]
    tokens = ptb_tokenize(flat + hyps)
    out_refs, at = [], 0
    for rs in refs:
        out_refs.append(tokens[at : at + len(rs)])
        at += len(rs)
    return tokens[at:], out_refs


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's PTB tokenization of each text (one JVM for all), with its temp file kept out of site-packages.

    Same command (`edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` from the bundled CoreNLP 3.4.1
    jar), same file content and the same removal of PUNCTUATIONS tokens. Besides "\\n", the other characters the
    tokenizer treats as line breaks become spaces too, so a caption can never spill onto the next one's line.
    """
    if not texts:
        return []
    java = _java()
    lines = [_LINE_BREAKS.sub(" ", text) for text in texts]
    with tempfile.TemporaryDirectory(prefix="vlm-peft-bench-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_bytes("\n".join(lines).encode())
        cmd = [java, "-cp", str(PTB_JAR), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
        done = subprocess.run([*cmd, str(path)], cwd=tmp, capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"PTB tokenizer failed (exit {done.returncode}): {_tail(done.stderr)}")
    out = done.stdout.decode().split("\n")
    # One output line per input line; a trailing newline (or trailing empty captions) may add empty strings.
    if len(out) < len(lines) or any(extra for extra in out[len(lines) :]):
        raise RuntimeError(f"PTB tokenizer returned {len(out)} lines for {len(lines)} captions: {_tail(done.stderr)}")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in out[: len(lines)]]


def _python_metrics(hyps: list[str], refs: list[list[str]], wanted: set[str]) -> dict[str, float]:
    gts = dict(enumerate(refs))
    res = {i: [h] for i, h in enumerate(hyps)}
    scores: dict[str, float] = {}
    if wanted & set(_BLEU):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({name: bleu[k] for k, name in enumerate(_BLEU) if name in wanted})
    if "ROUGE_L" in wanted:
        scores["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    if "CIDEr" in wanted:
        # pycocoevalcap's CIDEr-D takes max() over an empty document-frequency table when no reference has a single
        # token, and crashes; every n-gram vector is empty then, so the score is 0.
        has_tokens = any(r.split() for rs in refs for r in rs)
        scores["CIDEr"] = Cider().compute_score(gts, res)[0] if has_tokens else 0.0
    return scores


class MeteorProcess:
    """One METEOR 1.5 JVM speaking pycocoevalcap's stdio protocol, fed in bulk; use as a context manager.

    Same command as pycocoevalcap's Meteor (`java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`, run in its
    folder) and the same lines: one "SCORE ||| ref ... ||| hyp" per caption, whose statistics go into one
    "EVAL ||| stats ||| ..." line that returns the per-caption scores and the corpus score. pycocoevalcap writes a
    line and waits for its answer 5,000 times; here a writer thread sends all lines while the caller reads the
    answers. The protocol splits on "|||" and lines on newlines, so "|||" is removed from references as
    pycocoevalcap removes it from hypotheses, and newlines become spaces.
    """

    def __init__(self) -> None:
        cmd = [_java(), "-jar", "-Xmx2G", METEOR_JAR.name, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._lock = threading.Lock()
        self._stderr = tempfile.TemporaryFile()
        pipe = subprocess.PIPE
        try:
            self._proc = subprocess.Popen(
                cmd, cwd=METEOR_JAR.parent, stdin=pipe, stdout=pipe, stderr=self._stderr, bufsize=0
            )
        except BaseException:
            self._stderr.close()
            raise
        self._pending = b""

    def __enter__(self) -> MeteorProcess:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(kill=exc_type is not None)

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-caption METEOR) for aligned hypotheses and reference lists."""
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} reference lists")
        if not hyps:
            raise ValueError("nothing to score")
        with self._lock:
            lines = [_meteor_score_line(h, rs) for h, rs in zip(hyps, refs)]
            stats = self._exchange("".join(lines), len(lines))
            answers = self._exchange("EVAL ||| " + " ||| ".join(stats) + "\n", len(stats) + 1)
        return float(answers[-1]), [float(a) for a in answers[:-1]]

    def close(self, kill: bool = False) -> None:
        """End the JVM: stdin closed so that it exits by itself, killed if it does not (or at once with `kill`)."""
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=0 if kill else 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._stderr.close()

    def _exchange(self, text: str, n_lines: int) -> list[str]:
        """Send `text` from a writer thread while reading `n_lines` answers here (METEOR answers as it reads)."""
        writer = threading.Thread(target=self._write_all, args=(text.encode(),), daemon=True)
        writer.start()
        try:
            return self._read_lines(n_lines)
        finally:
            writer.join()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._proc.stdin.write(view) :]
        except (OSError, ValueError):
            pass  # METEOR died or was closed: the reader sees the end of its output and reports METEOR's error

    def _read_lines(self, n_lines: int) -> list[str]:
        chunks, count = [self._pending], self._pending.count(b"\n")
        while count < n_lines:
            chunk = self._proc.stdout.read(1 << 16)
            if not chunk:
                self._proc.wait()
                self._stderr.seek(0)
                raise RuntimeError(f"METEOR exited (code {self._proc.returncode}): {_tail(self._stderr.read())}")
            chunks.append(chunk)
            count += chunk.count(b"\n")
        lines = b"".join(chunks).split(b"\n")
        self._pending = b"\n".join(lines[n_lines:])
        return [line.decode().strip() for line in lines[:n_lines]]


def _meteor_score_line(hyp: str, refs: Sequence[str]) -> str:
    hyp = _LINE_BREAKS.sub(" ", hyp).replace("|||", "").replace("  ", " ")  # pycocoevalcap's hypothesis cleaning
    refs = [_LINE_BREAKS.sub(" ", r).replace("|||", "") for r in refs]
    return " ||| ".join(("SCORE", " ||| ".join(refs), hyp)) + "\n"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("caption metrics need Java (PTB tokenizer, METEOR): no `java` on PATH")
    return java


def _tail(data: bytes, limit: int = 2000) -> str:
    text = data.decode(errors="replace").strip()
    return text[-limit:] if text else "(no error output)"

