"""SPICE 1.0 (the spice-1.0.jar that pycocoevalcap 1.2 ships), run through Java, never downloading anything.

SPICE needs Stanford CoreNLP 3.6.0: `stanford-corenlp-3.6.0.jar` and `stanford-corenlp-3.6.0-models.jar` from
`stanford-corenlp-full-2015-12-09.zip` (Stanford NLP site; not on PyPI). pycocoevalcap's Spice class downloads
them on construction, so we never use it. We look for a folder holding both jars, first match wins:

1. the environment variable VLM_PEFT_BENCH_CORENLP;
2. `corenlp_dir:` in `$XDG_CONFIG_HOME/vlm-peft-bench/config.yaml` (default `~/.config/vlm-peft-bench/config.yaml`);
   a relative path is taken from the config file's folder;
3. pycocoevalcap's own `spice/lib/` folder, where its downloader would have put them.

An explicit setting (1 or 2) that names a folder without both jars makes SPICE unavailable, with that reason,
rather than silently falling through. The reference-parse cache defaults to `$XDG_CACHE_HOME/vlm-peft-bench/spice`
(`~/.cache/...`) and is created before the run.

Java 15 and newer removed the JavaScript engine that spice-1.0.jar uses to pretty-print its `-out` file: the
official command then parses and scores everything and dies with a NullPointerException, leaving an empty output.
On those versions we start SPICE through a small launcher (Java source run by the JDK's source launcher) that
calls the same `SpiceScorer.scoreBatch` without `-out` and writes the same JSON (unindented) itself. It needs a
JDK (the `jdk.compiler` module), not just a JRE. On Java 8-14 we run `edu.anu.spice.SpiceScorer` itself.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
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

ENV_VAR = "VLM_PEFT_BENCH_CORENLP"
CONFIG_KEY = "corenlp_dir"
CORENLP_RELEASE = "stanford-corenlp-full-2015-12-09"
CORENLP_JARS: tuple[str, str] = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
CORENLP_URL = f"https://nlp.stanford.edu/software/{CORENLP_RELEASE}.zip"

SPICE_DIR = Path(next(iter(pycocoevalcap.__path__))) / "spice"
SPICE_JAR = SPICE_DIR / "spice-1.0.jar"
SPICE_LIB = SPICE_DIR / "lib"

# SPICE's cache serializes with fst, which reflects into these JDK packages; Java 9+ must open them.
OPENED_PACKAGES: tuple[str, ...] = (
    "java.lang", "java.util", "java.math", "java.util.concurrent", "java.net", "java.text",
)  # fmt: skip
FIRST_JAVA_WITHOUT_JAVASCRIPT = 15

RUNNER_FILE = "SpiceRunner.java"
RUNNER_SOURCE = """\
import java.lang.reflect.Constructor;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;

/** Runs SPICE 1.0's SpiceScorer.scoreBatch and writes its stats as JSON: argv = out.json, then SPICE's arguments. */
public class SpiceRunner {
    public static void main(String[] argv) throws Exception {
        String[] spiceArgs = Arrays.copyOfRange(argv, 1, argv.length);
        Class<?> argsClass = Class.forName("edu.anu.spice.SpiceArguments");
        Constructor<?> newArgs = argsClass.getDeclaredConstructor(String[].class);
        newArgs.setAccessible(true);
        Object args = newArgs.newInstance((Object) spiceArgs);
        Class<?> scorerClass = Class.forName("edu.anu.spice.SpiceScorer");
        Constructor<?> newScorer = scorerClass.getDeclaredConstructor();
        newScorer.setAccessible(true);
        Object scorer = newScorer.newInstance();
        scorerClass.getMethod("scoreBatch", argsClass).invoke(scorer, args);
        Object stats = scorerClass.getField("stats").get(scorer);
        String json = (String) stats.getClass().getMethod("toJSONString").invoke(stats);
        Files.write(Paths.get(argv[0]), json.getBytes(StandardCharsets.UTF_8));
    }
}
"""


class SpiceUnavailableError(VlmPeftBenchError, RuntimeError):
    """SPICE cannot run on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class SpiceOutput:
    """Parsed SPICE output. `score` is the mean of the per-image "All" F-scores, as pycocoevalcap computes it."""

    score: float
    per_image: dict[Any, float]
    subsets: dict[Any, dict[str, dict[str, float]]]


def config_path() -> Path:
    """Where the optional config file is read from."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vlm-peft-bench" / "config.yaml"


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


def _corenlp_lookup() -> tuple[Path | None, list[str]]:
    """The CoreNLP folder, or None and what was found wrong at each place looked at."""
    notes: list[str] = []
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        folder = Path(env).expanduser()
        problem = _jar_problem(folder)
        return (folder, []) if problem is None else (None, [f"{ENV_VAR}={env} {problem}"])
    notes.append(f"{ENV_VAR} is not set")
    config = config_path()
    if config.is_file():
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            return None, [*notes, f"{config} could not be read: {exc}"]
        value = data.get(CONFIG_KEY) if isinstance(data, dict) else None
        if value:
            folder = Path(str(value)).expanduser()
            folder = folder if folder.is_absolute() else config.parent / folder
            problem = _jar_problem(folder)
            return (folder, []) if problem is None else (None, [*notes, f"{CONFIG_KEY}: {value} in {config} {problem}"])
        notes.append(f"{config} has no {CONFIG_KEY}")
    else:
        notes.append(f"no {config}")
    problem = _jar_problem(SPICE_LIB)
    if problem is None:
        return SPICE_LIB, []
    return None, [*notes, f"{SPICE_LIB} {problem}"]


def find_corenlp() -> Path | None:
    """The folder holding the two CoreNLP 3.6.0 jars, from the places listed in this module's docstring."""
    return _corenlp_lookup()[0]


@functools.lru_cache(maxsize=8)
def java_info(java: str) -> tuple[int | None, bool]:
    """(major version, has the jdk.compiler module) of a java executable; (None, False) when it cannot say."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None, False
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr.decode(errors="replace"))
    if not match:
        return None, False
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_402" is Java 8
        major = int(match.group(2))
    if major < 9:
        return major, False
    try:
        modules = subprocess.run([java, "--list-modules"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return major, False
    return major, b"jdk.compiler@" in modules.stdout


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run here; else "SPICE unavailable: <why>. <what to do>". Never downloads anything."""
    java = shutil.which("java")
    if java is None:
        return (
            "SPICE unavailable: no `java` on PATH. SPICE 1.0 needs Java 8 or newer (a JDK on Java 15+), "
            "e.g. `apt-get install openjdk-17-jdk-headless`."
        )
    if not SPICE_JAR.is_file():
        return f"SPICE unavailable: {SPICE_JAR} is missing; reinstall pycocoevalcap==1.2, which ships it."
    major, has_compiler = java_info(java)
    if major is None:
        return f"SPICE unavailable: could not read the version of {java} (`java -version`)."
    if major >= FIRST_JAVA_WITHOUT_JAVASCRIPT and not has_compiler:
        return (
            f"SPICE unavailable: Java {major} at {java} is a JRE without the jdk.compiler module. Java 15+ has no "
            "JavaScript engine, which spice-1.0.jar needs to write its output, so we start it through a small "
            "launcher that the JDK compiles; install a JDK (e.g. openjdk-17-jdk-headless) or put Java 8-14 first "
            "on PATH."
        )
    folder, notes = _corenlp_lookup()
    if folder is None:
        return (
            f"SPICE unavailable: Stanford CoreNLP 3.6.0 not found ({'; '.join(notes)}). SPICE 1.0 needs "
            f"{CORENLP_JARS[0]} and {CORENLP_JARS[1]} from {CORENLP_RELEASE}.zip, from the Stanford NLP site "
            f"({CORENLP_URL}; not on PyPI). Put the two jars in a folder and set {ENV_VAR} to it (or "
            f"`{CONFIG_KEY}:` in {config_path()}, or copy them into {SPICE_LIB}). Nothing is downloaded "
            "automatically."
        )
    return None


def spice_command(
    input_json: str | os.PathLike[str],
    output_json: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    corenlp_dir: str | os.PathLike[str],
    *,
    java: str = "java",
    java_major: int = 17,
    runner: str | os.PathLike[str] | None = None,
    spice_jar: str | os.PathLike[str] | None = None,
    spice_lib: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The SPICE command line (no side effects).

    `java -Xmx8G [--add-opens ...] -cp spice-1.0.jar:lib/*:<the two CoreNLP jars> <main> in.json -cache DIR
    [-out out.json] -subset -silent`, where <main> is `edu.anu.spice.SpiceScorer` before Java 15 and the launcher
    source `runner` (followed by the output path) from Java 15 on; `spice_jar` and `spice_lib` default to
    pycocoevalcap's. Only the two CoreNLP jars go on the class path,
    as in spice-1.0.jar's manifest, so other jars in a full CoreNLP folder cannot shadow SPICE's own libraries.
    """
    corenlp = Path(corenlp_dir)
    jars = [str(spice_jar or SPICE_JAR), str(Path(spice_lib or SPICE_LIB) / "*")]
    classpath = os.pathsep.join([*jars, *(str(corenlp / jar) for jar in CORENLP_JARS)])
    cmd = [java, "-Xmx8G"]
    if java_major >= 9:
        for package in OPENED_PACKAGES:
            cmd += ["--add-opens", f"java.base/{package}=ALL-UNNAMED"]
    cmd += ["-cp", classpath]
    options = ["-cache", str(cache_dir), "-subset", "-silent"]
    if java_major >= FIRST_JAVA_WITHOUT_JAVASCRIPT:
        if runner is None:
            raise ValueError(f"Java {java_major} needs the launcher source ({RUNNER_FILE}) as `runner`")
        return [*cmd, str(runner), str(output_json), str(input_json), *options]
    return [*cmd, "edu.anu.spice.SpiceScorer", str(input_json), "-cache", str(cache_dir), "-out", str(output_json),
            "-subset", "-silent"]  # fmt: skip


def write_spice_input(tests: Sequence[str], refs: Sequence[Sequence[str]], path: str | os.PathLike[str]) -> None:
    """SPICE's input file, as pycocoevalcap writes it: [{image_id, test, refs}], with image_id the position."""
    items = [{"image_id": i, "test": test, "refs": list(r)} for i, (test, r) in enumerate(zip(tests, refs))]
    Path(path).write_text(json.dumps(items, indent=2))


def prepare_spice_run(
    tests: Sequence[str],
    refs: Sequence[Sequence[str]],
    workdir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    corenlp_dir: str | os.PathLike[str],
    *,
    java: str = "java",
    java_major: int = 17,
) -> list[str]:
    """Write in.json (and the launcher source) into `workdir`, create the cache folder, return the command.

    The output goes to `workdir`/out.json. SPICE fails on a cache folder that does not exist, so it is made here.
    """
    work = Path(workdir)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    write_spice_input(tests, refs, work / "in.json")
    runner = work / RUNNER_FILE
    if java_major >= FIRST_JAVA_WITHOUT_JAVASCRIPT:
        runner.write_text(RUNNER_SOURCE)
    return spice_command(
        work / "in.json", work / "out.json", cache_dir, corenlp_dir, java=java, java_major=java_major, runner=runner
    )


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
            cmd = prepare_spice_run(tests, refs, work, cache, find_corenlp(), java=java, java_major=major or 0)
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
