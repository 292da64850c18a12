"""SPICE 1.0 (the spice-1.0.jar that pycocoevalcap 1.2 ships), run through Java; it never downloads anything.

SPICE needs Stanford CoreNLP 3.6.0, `stanford-corenlp-3.6.0.jar` and `stanford-corenlp-3.6.0-models.jar`, and on
Java 15+ the Nashorn JavaScript engine: `vlm-peft-bench spice setup` fetches them from Maven Central into one
folder (`spice_jars.py`). pycocoevalcap's Spice class downloads CoreNLP on construction, so we never use it. We
look for a folder holding the two CoreNLP jars, first match wins:

1. the environment variable VLM_PEFT_BENCH_CORENLP;
2. `corenlp_dir:` in `$XDG_CONFIG_HOME/vlm-peft-bench/config.yaml` (default `~/.config/vlm-peft-bench/config.yaml`;
   `spice setup` writes it); a relative path is taken from the config file's folder;
3. pycocoevalcap's own `spice/lib/` folder, where its downloader would have put them.

An explicit setting (1 or 2) that names a folder without both jars makes SPICE unavailable, with that reason,
rather than silently falling through. Nashorn's jars are used when they are in that same folder (how SPICE is
started: `spice_java.py`). The reference-parse cache defaults to `$VLM_PEFT_BENCH_SPICE_CACHE`, else
`$XDG_CACHE_HOME/vlm-peft-bench/spice` (`~/.cache/...`), and is created before the run; it is shared by runs and
processes (SPICE keeps it in an LMDB database), so references parsed once are not parsed again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycocoevalcap
import yaml

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.scoring.caption_inputs import check_caption_inputs
from vlm_peft_bench.scoring.spice_jars import CONFIG_KEY, NASHORN, config_path
from vlm_peft_bench.scoring.spice_java import (  # noqa: F401  (spice_command, write_spice_input: part of the API)
    CORENLP_JARS,
    FIRST_JAVA_WITHOUT_JAVASCRIPT,
    OPENED_PACKAGES,
    RUNNER_FILE,
    RUNNER_SOURCE,
    java_info,
    prepare_spice_run,
    spice_command,
    write_spice_input,
)

ENV_VAR = "VLM_PEFT_BENCH_CORENLP"
SETUP_COMMAND = "vlm-peft-bench spice setup"

SPICE_DIR = Path(next(iter(pycocoevalcap.__path__))) / "spice"
SPICE_JAR = SPICE_DIR / "spice-1.0.jar"
SPICE_LIB = SPICE_DIR / "lib"


class SpiceUnavailableError(VlmPeftBenchError, RuntimeError):
    """SPICE cannot run on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class SpiceOutput:
    """Parsed SPICE output. `score` is the mean of the per-image "All" F-scores, as pycocoevalcap computes it."""

    score: float
    per_image: dict[Any, float]
    subsets: dict[Any, dict[str, dict[str, float]]]


CACHE_ENV_VAR = "VLM_PEFT_BENCH_SPICE_CACHE"


def default_cache_dir() -> Path:
    """SPICE's reference-parse cache folder when none is given: $VLM_PEFT_BENCH_SPICE_CACHE, else the XDG cache."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vlm-peft-bench" / "spice"


def _jar_problem(folder: Path) -> str | None:
    if not folder.is_dir():
        return "is not a folder"
    missing = [jar for jar in CORENLP_JARS if not (folder / jar).is_file()]
    return f"lacks {' and '.join(missing)}" if missing else None


def _corenlp_lookup() -> tuple[Path | None, list[str], str]:
    """The CoreNLP folder (or None), what was found wrong at each place looked at, and where it came from."""
    notes: list[str] = []
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        folder = Path(env).expanduser()
        problem = _jar_problem(folder)
        return (folder, [], ENV_VAR) if problem is None else (None, [f"{ENV_VAR}={env} {problem}"], ENV_VAR)
    notes.append(f"{ENV_VAR} is not set")
    config = config_path()
    if config.is_file():
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            return None, [*notes, f"{config} could not be read: {exc}"], str(config)
        value = data.get(CONFIG_KEY) if isinstance(data, dict) else None
        if value:
            folder = Path(str(value)).expanduser()
            folder = folder if folder.is_absolute() else config.parent / folder
            problem = _jar_problem(folder)
            source = f"{CONFIG_KEY} in {config}"
            return (folder, [], source) if problem is None else (
                None, [*notes, f"{CONFIG_KEY}: {value} in {config} {problem}"], source)
        notes.append(f"{config} has no {CONFIG_KEY}")
    else:
        notes.append(f"no {config}")
    problem = _jar_problem(SPICE_LIB)
    if problem is None:
        return SPICE_LIB, [], "pycocoevalcap's spice/lib"
    return None, [*notes, f"{SPICE_LIB} {problem}"], "nowhere"


def find_corenlp() -> Path | None:
    """The folder holding the two CoreNLP 3.6.0 jars, from the places listed in this module's docstring."""
    return _corenlp_lookup()[0]


def nashorn_jars(corenlp: Path | None) -> list[Path]:
    """Nashorn's jars when all of them are in the CoreNLP folder (where `spice setup` puts them), else []."""
    if corenlp is None:
        return []
    jars = [corenlp / artifact.file_name for artifact in NASHORN]
    return jars if all(jar.is_file() for jar in jars) else []


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run here; else "SPICE unavailable: <why>. <what to do>". Never downloads anything."""
    java = shutil.which("java")
    if java is None:
        return (
            "SPICE unavailable: no `java` on PATH. SPICE 1.0 needs Java 8 or newer, "
            "e.g. `apt-get install openjdk-17-jdk-headless`."
        )
    if not SPICE_JAR.is_file():
        return f"SPICE unavailable: {SPICE_JAR} is missing; reinstall pycocoevalcap==1.2, which ships it."
    major, has_compiler = java_info(java)
    if major is None:
        return f"SPICE unavailable: could not read the version of {java} (`java -version`)."
    folder, notes, _ = _corenlp_lookup()
    if folder is None:
        return (
            f"SPICE unavailable: Stanford CoreNLP 3.6.0 not found ({'; '.join(notes)}). Run `{SETUP_COMMAND}` "
            f"(it fetches {CORENLP_JARS[0]}, {CORENLP_JARS[1]} and, for Java 15+, the Nashorn JavaScript engine "
            f"from Maven Central into a folder of yours and records it as `{CONFIG_KEY}:` in {config_path()}), or "
            f"put the two jars in a folder and set {ENV_VAR} to it."
        )
    if major >= FIRST_JAVA_WITHOUT_JAVASCRIPT and not has_compiler and not nashorn_jars(folder):
        return (
            f"SPICE unavailable: Java {major} at {java} has no JavaScript engine, which spice-1.0.jar needs to "
            f"write its output, and no jdk.compiler module for our launcher, and {folder} lacks Nashorn's jars. "
            f"Run `{SETUP_COMMAND} --dir {folder}` (it adds Nashorn), install a JDK (e.g. openjdk-17-jdk-headless), "
            "or put Java 8-14 first on PATH."
        )
    return None


def entry_point(java_major: int | None, corenlp: Path | None) -> str:
    """How SPICE starts here: the official SpiceScorer (Java 8-14, or with Nashorn) or our launcher."""
    if java_major is not None and java_major >= FIRST_JAVA_WITHOUT_JAVASCRIPT and not nashorn_jars(corenlp):
        return f"our launcher ({RUNNER_FILE}: Java {java_major} has no JavaScript engine and Nashorn is absent)"
    why = "Nashorn on the class path" if nashorn_jars(corenlp) else f"Java {java_major}"
    return f"edu.anu.spice.SpiceScorer, the official entry point ({why})"


def spice_report() -> dict[str, Any]:
    """What SPICE would use here and why (`vlm-peft-bench spice status`); nothing is run or downloaded."""
    java = shutil.which("java")
    major, has_compiler = java_info(java) if java else (None, False)
    folder, notes, source = _corenlp_lookup()
    reason = spice_unavailable_reason()
    return {
        "available": reason is None, "reason": reason,
        "java": {"path": java, "major": major, "jdk_compiler": has_compiler},
        "spice_jar": str(SPICE_JAR), "spice_jar_present": SPICE_JAR.is_file(),
        "corenlp_dir": None if folder is None else str(folder), "corenlp_from": source, "looked_at": notes,
        "nashorn": [str(jar) for jar in nashorn_jars(folder)],
        "entry_point": entry_point(major, folder) if reason is None else None,
        "cache_dir": str(default_cache_dir()), "config_file": str(config_path()),
    }


def format_report(report: dict[str, Any]) -> str:
    java = report["java"]
    lines = [f"SPICE: {'available' if report['available'] else 'unavailable'}",
             f"java: {java['path'] or 'none on PATH'}" + (f" (Java {java['major']}, jdk.compiler "
                                                           f"{'yes' if java['jdk_compiler'] else 'no'})"
                                                           if java["path"] else ""),
             f"spice-1.0.jar: {report['spice_jar']}" + ("" if report["spice_jar_present"] else " (missing)"),
             f"CoreNLP 3.6.0: {report['corenlp_dir'] or 'not found'} (from {report['corenlp_from']})",
             f"Nashorn: {'in the CoreNLP folder' if report['nashorn'] else 'absent'}",
             f"reference-parse cache: {report['cache_dir']}", f"config file: {report['config_file']}"]
    if report["entry_point"]:
        lines.append(f"starts: {report['entry_point']}")
    if report["reason"]:
        lines.append(report["reason"])
    return "\n".join(lines)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # pycocoevalcap's float_convert


def parse_spice_output(source: str | os.PathLike[str] | list[dict[str, Any]]) -> SpiceOutput:
    """Parse SPICE's output (a path or the loaded list of {image_id, scores: {All: {f, pr, re, ...}, ...}}).

    The corpus score is the plain mean of the per-image All F-scores, as pycocoevalcap's np.mean gives it: a NaN
    would make it NaN (spice-1.0.jar never writes NaN for "All", only for empty subsets such as "Color").
    """
    data = source if isinstance(source, list) else json.loads(Path(source).read_text(encoding="utf-8") or "null")
    if not isinstance(data, list) or not data:
        raise ValueError(f"unexpected SPICE output: expected a non-empty list, got {str(data)[:200]!r}")
    per_image: dict[Any, float] = {}
    subsets: dict[Any, dict[str, dict[str, float]]] = {}
    for item in data:
        try:
            image_id, scores = item["image_id"], item["scores"]
            per_image[image_id] = _to_float(scores["All"]["f"])
            subsets[image_id] = {name: {k: _to_float(v) for k, v in stats.items()} for name, stats in scores.items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unexpected SPICE output item {str(item)[:200]!r}: missing {exc}") from exc
    values = list(per_image.values())
    return SpiceOutput(score=float(np.mean(np.array(values))), per_image=per_image, subsets=subsets)


class SpiceJob:
    """One SPICE run over aligned captions: started on construction, `result()` waits for it; a context manager.

    Raises SpiceUnavailableError (with `spice_unavailable_reason()`'s text) when SPICE cannot run here.
    """

    def __init__(
        self,
        tests: Sequence[str],
        refs: Sequence[Sequence[str]],
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if len(tests) != len(refs) or not tests:
            raise ValueError(f"SPICE needs aligned, non-empty captions: {len(tests)} tests, {len(refs)} ref lists")
        reason = spice_unavailable_reason()
        if reason is not None:
            raise SpiceUnavailableError(reason)
        java = shutil.which("java") or "java"
        major, _ = java_info(java)
        self._count = len(tests)
        self._tmp = tempfile.TemporaryDirectory(prefix="vlm-peft-bench-spice-")
        work = Path(self._tmp.name)
        self._output = work / "out.json"
        self._log_path = work / "spice.log"
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            corenlp = find_corenlp()
            cmd = prepare_spice_run(tests, refs, work, cache, corenlp, java=java, java_major=major or 0,
                                    spice_jar=SPICE_JAR, spice_lib=SPICE_LIB, nashorn=nashorn_jars(corenlp))
            self._log = open(self._log_path, "wb")  # closed in close()
            try:
                self._proc = subprocess.Popen(
                    cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
                )
            except BaseException:
                self._log.close()
                raise
        except BaseException:
            self._tmp.cleanup()
            raise

    def __enter__(self) -> SpiceJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def result(self) -> SpiceOutput:
        """Wait for SPICE and parse its output; image ids are the positions of the captions given."""
        code = self._proc.wait()
        if code != 0 or not self._output.is_file() or self._output.stat().st_size == 0:
            self._log.flush()
            tail = self._log_path.read_bytes().decode(errors="replace").strip()[-3000:]
            raise RuntimeError(f"SPICE failed (exit {code}): {tail or '(no output)'}")
        out = parse_spice_output(self._output)
        if sorted(out.per_image) != list(range(self._count)):
            raise RuntimeError(f"SPICE scored {len(out.per_image)} captions for {self._count} given")
        return out

    def close(self) -> None:
        """Kill SPICE if it still runs (its result was not awaited) and remove the temp files."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        self._tmp.cleanup()


def spice_score(
    predictions: Mapping[Any, str],
    references: Mapping[Any, Sequence[str]],
    cache_dir: str | os.PathLike[str] | None = None,
) -> float:
    """Corpus SPICE (0..1) of `predictions` against `references` (same ids), on the text as given.

    `caption_scores(..., metrics=["SPICE"])` PTB-tokenizes first, as COCOEvalCap does. Raises SpiceUnavailableError
    when SPICE cannot run here.
    """
    ids = check_caption_inputs(predictions, references)
    with SpiceJob([predictions[i] for i in ids], [list(references[i]) for i in ids], cache_dir) as job:
        return job.result().score
