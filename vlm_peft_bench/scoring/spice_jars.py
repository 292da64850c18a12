"""The jars SPICE needs beyond what pycocoevalcap ships, fetched from Maven Central: `vlm-peft-bench spice setup`.

spice-1.0.jar (in pycocoevalcap) needs Stanford CoreNLP 3.6.0, its code jar and its models jar (~360 MB), which
Maven Central publishes as `edu.stanford.nlp:stanford-corenlp:3.6.0` and the same coordinates with classifier
`models`. On Java 15 and newer it also needs a JavaScript engine to write its output file: the standalone Nashorn
(`org.openjdk.nashorn:nashorn-core:15.4`, Java 11+) and the asm 7.3.1 libraries its POM names. With them on the
class path the official `edu.anu.spice.SpiceScorer` runs unmodified (`spice_java.py`).

`setup` puts all eight jars in one folder of the user's (default: the platform's user data folder, e.g.
`~/.local/share/vlm-peft-bench/corenlp`; never inside the installed package) and records it as `corenlp_dir` in
our config file. With `mvn` on PATH it copies each artifact with the dependency plugin (so Maven's local cache is
reused), otherwise it downloads the files over HTTPS. Every file is checked against the SHA-1 checksum Maven
Central publishes beside it and against the checksum pinned here (the two must agree), written under a temporary
name and renamed only once it is checked, so no half-written jar is ever left in place. Jars already there and
matching their pinned checksum are not fetched again, and that check needs no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.errors import VlmPeftBenchError

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
CONFIG_KEY = "corenlp_dir"


class SpiceSetupError(VlmPeftBenchError, RuntimeError):
    """The jars could not be fetched or checked; the message says why and what to do."""


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str
    sha1: str  # pinned: what Maven Central published for this file (checked again against it when fetching)
    classifier: str | None = None

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}{'-' + self.classifier if self.classifier else ''}.jar"

    @property
    def coordinates(self) -> str:
        """Maven's `group:artifact:version[:packaging:classifier]`."""
        return f"{self.group}:{self.name}:{self.version}" + (f":jar:{self.classifier}" if self.classifier else "")

    @property
    def url(self) -> str:
        return f"{MAVEN_CENTRAL}/{self.group.replace('.', '/')}/{self.name}/{self.version}/{self.file_name}"


CORENLP: tuple[Artifact, ...] = (
    Artifact("edu.stanford.nlp", "stanford-corenlp", "3.6.0", "078d130323856e71e4223ab4962a3f86bc98bd8a"),
    Artifact("edu.stanford.nlp", "stanford-corenlp", "3.6.0", "e23de94a12edac0dd04dc67db94d18d8982b516f", "models"),
)
NASHORN: tuple[Artifact, ...] = (
    Artifact("org.openjdk.nashorn", "nashorn-core", "15.4", "f67f5ffaa5f5130cf6fb9b133da00c7df3b532a5"),
    Artifact("org.ow2.asm", "asm", "7.3.1", "7ec32f922315924e82bf58b36ee1b673b2a9b820"),
    Artifact("org.ow2.asm", "asm-commons", "7.3.1", "daaa79ef260eb67404b9a52bc319a024c7f49cfe"),
    Artifact("org.ow2.asm", "asm-tree", "7.3.1", "587ce54d243145b2e89598bfcea7823ded73be5d"),
    Artifact("org.ow2.asm", "asm-util", "7.3.1", "cac1bf54c2fb86671c357d281d1060fe5d50a0de"),
    Artifact("org.ow2.asm", "asm-analysis", "7.3.1", "045dfd299ea0c17d534499c4f06417ceccfa2d02"),
)
ARTIFACTS = CORENLP + NASHORN


def default_dir() -> Path:
    """The platform's user data folder for our jars (`platformdirs`; on Linux `$XDG_DATA_HOME` or
    `~/.local/share`, then `vlm-peft-bench/corenlp`)."""
    import platformdirs

    return platformdirs.user_data_path("vlm-peft-bench", appauthor=False) / "corenlp"


def config_path() -> Path:
    """Our config file: `$XDG_CONFIG_HOME/vlm-peft-bench/config.yaml` (default `~/.config/...`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vlm-peft-bench" / "config.yaml"


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def invalid(folder: Path, artifacts: tuple[Artifact, ...] | None = None) -> list[Artifact]:
    """The artifacts (default: all eight) missing from `folder` or whose file does not match its pinned checksum
    (no network)."""
    return [a for a in (ARTIFACTS if artifacts is None else artifacts) if not _valid(folder / a.file_name, a.sha1)]


def _valid(path: Path, sha1: str) -> bool:
    return path.is_file() and file_sha1(path) == sha1


def _offline_advice(folder: Path) -> str:
    return (f"On a machine that reaches Maven Central run `vlm-peft-bench spice setup --dir DIR`, copy DIR to "
            f"{folder} here, and run `vlm-peft-bench spice setup --dir {folder}` (it only checks the files); or "
            "put the jars there by hand: " + ", ".join(a.url for a in ARTIFACTS))


def check_reachable(folder: Path, timeout: float = 10.0) -> None:
    """Fail at once, saying what to do, when Maven Central does not answer."""
    try:
        urllib.request.urlopen(urllib.request.Request(ARTIFACTS[0].url + ".sha1", method="HEAD"),
                               timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: what it said is for `fetch` to report
    except (urllib.error.URLError, OSError) as err:
        raise SpiceSetupError(f"cannot reach Maven Central ({MAVEN_CENTRAL}: {err}). {_offline_advice(folder)}"
                              ) from err


def published_sha1(artifact: Artifact, timeout: float = 30.0) -> str:
    """The SHA-1 Maven Central publishes beside the file (`<url>.sha1`)."""
    try:
        with urllib.request.urlopen(artifact.url + ".sha1", timeout=timeout) as response:
            text = response.read(200).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise SpiceSetupError(f"{artifact.url}.sha1: cannot read the published checksum ({err})") from err
    value = text.strip().split()[0].lower() if text.strip() else ""
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise SpiceSetupError(f"{artifact.url}.sha1: not a SHA-1 checksum: {text[:80]!r}")
    return value


def _download(artifact: Artifact, target: Path, progress: Callable[[int, int | None], None] | None) -> None:
    """Stream the file from Maven Central into `target` (a temporary name)."""
    try:
        with urllib.request.urlopen(artifact.url, timeout=60) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as err:
        raise SpiceSetupError(f"{artifact.url}: download failed ({err})") from err


def _mvn_copy(artifact: Artifact, target: Path, mvn: str) -> None:
    """Copy the artifact through Maven's local cache (`mvn dependency:copy`) into `target` (a temporary name)."""
    with tempfile.TemporaryDirectory(prefix=".mvn-", dir=target.parent) as tmp:
        cmd = [mvn, "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact.coordinates}",
               f"-DoutputDirectory={tmp}"]
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        copied = Path(tmp) / artifact.file_name
        if done.returncode != 0 or not copied.is_file():
            raise SpiceSetupError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
                                  f"{(done.stdout + done.stderr).strip()[-1500:]}")
        shutil.move(str(copied), target)


def fetch(artifact: Artifact, folder: Path, method: str, progress=None) -> None:
    """Fetch one artifact into `folder`, checked, under its own name only once it is checked."""
    expected = published_sha1(artifact)
    if expected != artifact.sha1:
        raise SpiceSetupError(f"{artifact.url}: Maven Central publishes SHA-1 {expected}, this version of "
                              f"vlm-peft-bench expects {artifact.sha1}; refusing the file")
    temp = folder / f".{artifact.file_name}.part-{os.getpid()}"
    try:
        if method == "mvn":
            _mvn_copy(artifact, temp, shutil.which("mvn") or "mvn")
        else:
            _download(artifact, temp, progress)
        found = file_sha1(temp)
        if found != expected:
            raise SpiceSetupError(f"{artifact.url}: the fetched file has SHA-1 {found}, Maven Central publishes "
                                  f"{expected}; nothing was installed (try again)")
        os.replace(temp, folder / artifact.file_name)
    finally:
        temp.unlink(missing_ok=True)


def record_folder(folder: Path) -> Path:
    """Write `corenlp_dir: <folder>` into our config file (other settings kept); the file's path."""
    path = config_path()
    data = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SpiceSetupError(f"{path}: cannot read it to add {CONFIG_KEY} ({err}); fix or remove it") from err
        if not isinstance(data, dict):
            raise SpiceSetupError(f"{path}: not a mapping of settings; fix or remove it")
    data[CONFIG_KEY] = str(folder)
    write_files(path.parent, {path.name: yaml.safe_dump(data, sort_keys=True).encode()})
    return path


@dataclass
class SetupReport:
    folder: Path
    fetched: list[str]
    present: list[str]
    method: str | None
    config: Path | None


def setup(folder: Path | None = None, method: str = "auto", write_config: bool = True,
          log: Callable[[str], None] = print, progress_factory=None) -> SetupReport:
    """Make sure `folder` (default `default_dir()`) holds the eight checked jars; fetch what is missing."""
    folder = Path(folder).expanduser().resolve() if folder else default_dir()
    if method not in ("auto", "mvn", "https"):
        raise SpiceSetupError(f"--method {method!r}: use auto, mvn or https")
    if method == "mvn" and shutil.which("mvn") is None:
        raise SpiceSetupError("--method mvn: no `mvn` on PATH (use --method https, or install Maven)")
    folder.mkdir(parents=True, exist_ok=True)
    todo = invalid(folder)
    present = [a.file_name for a in ARTIFACTS if a not in todo]
    chosen = None
    if todo:
        check_reachable(folder)
        chosen = ("mvn" if shutil.which("mvn") else "https") if method == "auto" else method
        for artifact in todo:
            log(f"fetching {artifact.coordinates} ({chosen}) into {folder}")
            progress = progress_factory(artifact) if progress_factory and chosen == "https" else None
            try:
                fetch(artifact, folder, chosen, progress)
            finally:
                if progress is not None and hasattr(progress, "close"):
                    progress.close()
    config = record_folder(folder) if write_config else None
    return SetupReport(folder, [a.file_name for a in todo], present, chosen, config)
