"""How SPICE 1.0 is started: the Java version and modules at hand, the command line, the input file.

spice-1.0.jar's `edu.anu.spice.SpiceScorer` pretty-prints its `-out` file through a JavaScript engine, which Java 15
removed: without one the official command parses and scores everything, then dies with a NullPointerException and
leaves no output. Two ways round it, in order of preference:

1. the standalone Nashorn engine (`org.openjdk.nashorn:nashorn-core:15.4` and asm 7.3.1, fetched by
   `vlm-peft-bench spice setup` into the CoreNLP folder) on the class path: the official entry point runs
   unmodified, as on Java 8-14;
2. otherwise a small launcher (Java source run by the JDK's source launcher) that calls the same
   `SpiceScorer.scoreBatch` without `-out` and writes the same statistics as JSON itself; it needs a JDK (the
   `jdk.compiler` module), not just a JRE.

`tests/test_spice.py` checks that both give the same scores on the same input where the real jars are installed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

# SPICE's cache serializes with fst, which reflects into these JDK packages; Java 9+ must open them.
OPENED_PACKAGES: tuple[str, ...] = (
    "java.lang", "java.util", "java.math", "java.util.concurrent", "java.net", "java.text",
)  # fmt: skip
FIRST_JAVA_WITHOUT_JAVASCRIPT = 15
CORENLP_JARS: tuple[str, str] = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

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


def spice_command(
    input_json: str | os.PathLike[str],
    output_json: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    corenlp_dir: str | os.PathLike[str],
    *,
    java: str = "java",
    java_major: int = 17,
    runner: str | os.PathLike[str] | None = None,
    spice_jar: str | os.PathLike[str],
    spice_lib: str | os.PathLike[str],
    nashorn: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """The SPICE command line (no side effects).

    `java -Xmx8G [--add-opens ...] -cp spice-1.0.jar:lib/*:<the two CoreNLP jars>[:<Nashorn's jars>] <main> in.json
    -cache DIR [-out out.json] -subset -silent`, where <main> is the official `edu.anu.spice.SpiceScorer` before
    Java 15, and from Java 15 on too when `nashorn` lists the engine's jars; otherwise the launcher source `runner`
    (followed by the output path). Only the two CoreNLP jars go on the class path, as in spice-1.0.jar's manifest,
    so other jars in a full CoreNLP folder cannot shadow SPICE's own libraries.
    """
    corenlp = Path(corenlp_dir)
    jars = [str(spice_jar), str(Path(spice_lib) / "*"), *(str(corenlp / jar) for jar in CORENLP_JARS)]
    official = java_major < FIRST_JAVA_WITHOUT_JAVASCRIPT or bool(nashorn)
    classpath = os.pathsep.join([*jars, *(str(jar) for jar in nashorn)] if official else jars)
    cmd = [java, "-Xmx8G"]
    if java_major >= 9:
        for package in OPENED_PACKAGES:
            cmd += ["--add-opens", f"java.base/{package}=ALL-UNNAMED"]
    cmd += ["-cp", classpath]
    options = ["-cache", str(cache_dir), "-subset", "-silent"]
    if not official:
        if runner is None:
            raise ValueError(f"Java {java_major} without Nashorn needs the launcher source ({RUNNER_FILE}) as "
                             "`runner`")
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
    spice_jar: str | os.PathLike[str],
    spice_lib: str | os.PathLike[str],
    nashorn: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """Write in.json (and the launcher source) into `workdir`, create the cache folder, return the command.

    The output goes to `workdir`/out.json. SPICE fails on a cache folder that does not exist, so it is made here.
    """
    work = Path(workdir)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    write_spice_input(tests, refs, work / "in.json")
    runner = work / RUNNER_FILE
    if java_major >= FIRST_JAVA_WITHOUT_JAVASCRIPT and not nashorn:
        runner.write_text(RUNNER_SOURCE)
    return spice_command(work / "in.json", work / "out.json", cache_dir, corenlp_dir, java=java,
                         java_major=java_major, runner=runner, spice_jar=spice_jar, spice_lib=spice_lib,
                         nashorn=nashorn)
