"""Read one JSON document from a file, or say exactly why not: missing, unreadable, empty, not UTF-8, cut off
(an interrupted write: the text ends before the JSON closes) or otherwise not JSON (line and column); the same
words for YAML errors and for a value of the wrong kind."""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.leaderboard.problems import RERUN, BadFile
from vlm_peft_bench.paths import display_path


def json_problem(text: str, err: json.JSONDecodeError) -> str:
    """'cut off ...' when the text ends inside the JSON (a killed or interrupted writer), else where it breaks."""
    end = len(text.rstrip())
    if err.pos >= end or err.msg.startswith("Unterminated string"):
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        return (f"truncated: the JSON ends before it is complete ({len(text.encode())} bytes, {lines} lines; "
                "the run that wrote it was probably interrupted)")
    return f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"


def read_json(path: Path, shown: str, fix: str = RERUN):
    """The parsed document; `BadFile` naming `shown` otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise BadFile(shown, f"cannot be read ({err.strerror or err})", fix) from err
    if not raw.strip():
        raise BadFile(shown, f"empty ({len(raw)} bytes): the run that was writing it did not finish", fix)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadFile(shown, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}): not a JSON "
                             "file", fix) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadFile(shown, json_problem(text, err), fix) from err
    except RecursionError as err:
        raise BadFile(shown, "not usable JSON: nested too deeply", fix) from err


def kind_of(value) -> str:
    """How a JSON value is named in messages: 'an object', 'a list', 'a string', ..."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def yaml_problem(err) -> str:
    """'not valid YAML (what, at line L, column C)' for a yaml.YAMLError."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML ({getattr(err, 'problem', None) or err}{where})"


def files_under(dirs: list[Path], pattern: str) -> list[tuple[Path, str]]:
    """(path, path as shown) of every file matching `pattern` under the folders, each folder's sorted."""
    return [(path, display_path(path)) for d in dirs if Path(d).is_dir() for path in sorted(Path(d).rglob(pattern))]
