"""Sample logs (`<stamp>_samples_<task>.jsonl`, or `.jsonl.gz`): one JSON record per evaluated item, read for
bootstrap intervals and the hash of the evaluated inputs.

lmms-eval writes the results file first and then appends the log record by record, so a run killed while
logging leaves complete scores and a partial log. Hence two outcomes besides a good log:

- incomplete (`SampleLog.incomplete` says how): fewer records than the results file counts
  (`n-samples.<task>.effective`), the last line cut off, a gzip stream that ends early, an empty file. The
  scores are finished work and stay on the leaderboard; the row gets no interval and no inputs hash (both
  need every item), and the builder records why in the cell's `ci_note` and in the notes.
- bad (`BadFile`, naming the line): a line before the last that is not JSON or not UTF-8, a record that is not
  an object or has no integer `doc_id`, a `doc_id` twice, more records than the results file counts, a corrupt
  gzip stream. The log contradicts itself or its results file; the builder refuses it (with --skip-bad it leaves
  the log out: the scores stay, without an interval, and the log is named in `inputs.skipped`).

One record per item is expected (the leaderboard's tasks have one filter), so only logs of tasks the
leaderboard shows are read.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import jsonlines

from vlm_peft_bench.leaderboard.problems import BadFile
from vlm_peft_bench.leaderboard.readfile import kind_of

FIX = "re-run that evaluation with --log_samples, or remove the log (the scores stay, without an interval)"


@dataclass
class SampleLog:
    records: list[dict]  # sorted by doc_id
    incomplete: str | None = None  # why the log holds fewer items than the run evaluated; None when complete


def _lines(path: Path, shown: str) -> tuple[list[tuple[int, bytes]], bool]:
    """(line number, bytes) of every non-blank line, and whether a gzip stream ended early."""
    lines, cut = [], False
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            try:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        lines.append((number, line))
            except EOFError:
                cut = True
    except (gzip.BadGzipFile, zlib.error) as err:
        raise BadFile(shown, f"not a readable gzip stream ({err})", FIX) from err
    except OSError as err:
        raise BadFile(shown, f"cannot be read ({err.strerror or err})", FIX) from err
    return lines, cut


def _parsed(lines: list[tuple[int, bytes]]) -> list[tuple[int, object, str | None]]:
    """(line number, record, None) or (line number, None, why it is not JSON) for each line, read by jsonlines."""
    reader = jsonlines.Reader(line for _, line in lines)
    out = []
    for number, _ in lines:
        try:
            out.append((number, reader.read(allow_none=True), None))
        except jsonlines.InvalidLineError as err:
            cause = err.__cause__
            if isinstance(cause, UnicodeDecodeError):
                why = f"not UTF-8 (byte 0x{err.line[cause.start]:02x} at column {cause.start + 1})"
            elif isinstance(cause, json.JSONDecodeError):
                why = f"not JSON ({cause.msg} at column {cause.colno})"
            else:
                why = f"not JSON ({err})"
            out.append((number, None, why))
    return out


def read_samples(path: Path, shown: str | None = None, expected: int | None = None) -> SampleLog:
    """The log's records sorted by doc_id, with `incomplete` set for a partial log; `BadFile` for a bad one.
    `expected`: the number of items the results file counts for this task (None: unknown, not checked)."""
    path = Path(path)
    shown = shown or path.as_posix()
    lines, early_end = _lines(path, shown)
    records, seen, bad, cut_line = [], {}, [], None
    for index, (number, record, why) in enumerate(_parsed(lines)):
        if why is not None:
            if index == len(lines) - 1:
                cut_line = (number, why)  # the last line: an interrupted append
            else:
                bad.append(f"line {number} is {why}")
            continue
        if not isinstance(record, dict):
            bad.append(f"line {number} is {kind_of(record)}, not a sample record (an object)")
            continue
        doc_id = record.get("doc_id")
        if not isinstance(doc_id, int) or isinstance(doc_id, bool):
            bad.append(f"line {number} has no integer doc_id")
            continue
        if doc_id in seen:
            bad.append(f"doc_id {doc_id} is on lines {seen[doc_id]} and {number}")
            continue
        seen[doc_id] = number
        records.append(record)
    n = len(records)
    if expected is not None and n > expected:
        bad.append(f"holds {n} records but its results file counts {expected} items (n-samples): the log is not "
                   "from that run")
    elif cut_line and expected is not None and n == expected:
        bad.append(f"line {cut_line[0]} is {cut_line[1]}, after all {expected} records")
    if bad:
        more = f" (and {len(bad) - 1} more problems)" if len(bad) > 1 else ""
        raise BadFile(shown, bad[0] + more, FIX)
    parts = ([f"line {cut_line[0]} is cut off"] if cut_line else []) + (
        ["the gzip stream ends early"] if early_end else [])
    if expected is not None and n < expected:
        parts.append(f"{n} of {expected} records")
    elif parts or not n:
        parts.append(f"{n} records")
    return SampleLog(sorted(records, key=lambda r: r["doc_id"]), "; ".join(parts) or None)
