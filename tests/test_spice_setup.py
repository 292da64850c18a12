"""`vlm-peft-bench spice setup` / `status` (vlm_peft_bench/scoring/spice_jars.py), against a stand-in Maven
repository served from a temporary folder on localhost: fetched files are checked against the published and the
pinned checksums, nothing half-written is left, valid jars are not fetched again (no network needed then),
an unreachable repository fails at once with what to do, the mvn route, and the config file."""

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import types
import urllib.request
from pathlib import Path

import pytest
import yaml

from vlm_peft_bench.scoring import spice, spice_jars
from vlm_peft_bench.scoring.spice_jars import Artifact, SpiceSetupError


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


JARS = {"a": b"first jar " * 1000, "b": b"second jar, with a classifier " * 3000}


def artifacts(pinned=None):
    pinned = pinned or {}
    return (Artifact("org.example", "tool", "1.0", pinned.get("a", _sha1(JARS["a"]))),
            Artifact("org.example", "tool", "1.0", pinned.get("b", _sha1(JARS["b"])), "models"))


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A Maven layout on localhost holding the two stand-in jars and their .sha1 files; `served` lists requests."""
    root = tmp_path / "repo"
    for key, artifact in zip(JARS, artifacts()):
        path = root / artifact.url.removeprefix(spice_jars.MAVEN_CENTRAL + "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JARS[key])
        Path(str(path) + ".sha1").write_text(_sha1(JARS[key]) + "  " + path.name + "\n")
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            served.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(spice_jars, "MAVEN_CENTRAL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(spice_jars, "ARTIFACTS", artifacts())
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield types.SimpleNamespace(root=root, served=served)
    server.shutdown()


def test_fetches_checks_and_records(repository, tmp_path):
    folder = tmp_path / "jars"
    config = tmp_path / "config" / "vlm-peft-bench" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("other_setting: 3\n")
    report = spice_jars.setup(folder, method="https", log=lambda text: None)
    assert sorted(report.fetched) == ["tool-1.0-models.jar", "tool-1.0.jar"] and report.method == "https"
    assert (folder / "tool-1.0.jar").read_bytes() == JARS["a"]
    assert (folder / "tool-1.0-models.jar").read_bytes() == JARS["b"]
    assert sorted(p.name for p in folder.iterdir()) == ["tool-1.0-models.jar", "tool-1.0.jar"]  # no temporaries
    assert yaml.safe_load(config.read_text()) == {"other_setting": 3, "corenlp_dir": str(folder.resolve())}


def test_valid_jars_are_kept_without_asking_the_network(repository, tmp_path, monkeypatch):
    folder = tmp_path / "jars"
    spice_jars.setup(folder, method="https", log=lambda text: None, write_config=False)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was asked although every jar is valid")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    report = spice_jars.setup(folder, log=lambda text: None, write_config=False)
    assert report.fetched == [] and report.method is None and len(report.present) == 2
    assert not (tmp_path / "config").exists()


def test_a_damaged_jar_is_fetched_again(repository, tmp_path):
    folder = tmp_path / "jars"
    spice_jars.setup(folder, method="https", log=lambda text: None, write_config=False)
    (folder / "tool-1.0.jar").write_bytes(b"truncated")
    report = spice_jars.setup(folder, method="https", log=lambda text: None, write_config=False)
    assert report.fetched == ["tool-1.0.jar"] and (folder / "tool-1.0.jar").read_bytes() == JARS["a"]


def test_a_file_that_does_not_match_the_published_checksum_is_not_installed(repository, tmp_path):
    path = repository.root / artifacts()[1].url.removeprefix(spice_jars.MAVEN_CENTRAL + "/")
    path.write_bytes(JARS["b"][:-10])  # served, but not what the .sha1 beside it says
    folder = tmp_path / "jars"
    with pytest.raises(SpiceSetupError, match="the fetched file has SHA-1 .* Maven Central publishes"):
        spice_jars.setup(folder, method="https", log=lambda text: None, write_config=False)
    assert sorted(p.name for p in folder.iterdir()) == ["tool-1.0.jar"]  # the first one only, nothing half-written


def test_a_published_checksum_that_differs_from_the_pinned_one_is_refused(repository, tmp_path, monkeypatch):
    monkeypatch.setattr(spice_jars, "ARTIFACTS", artifacts({"a": "0" * 40}))
    with pytest.raises(SpiceSetupError, match="expects 0000000000"):
        spice_jars.setup(tmp_path / "jars", method="https", log=lambda text: None, write_config=False)
    assert list((tmp_path / "jars").iterdir()) == []


def test_offline_fails_at_once_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(spice_jars, "MAVEN_CENTRAL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(spice_jars, "ARTIFACTS", artifacts())
    with pytest.raises(SpiceSetupError, match="cannot reach Maven Central .* copy DIR to .* or put the jars"):
        spice_jars.setup(tmp_path / "jars", log=lambda text: None, write_config=False)


def test_the_mvn_route_copies_through_maven(repository, tmp_path, monkeypatch):
    """A stand-in `mvn` that copies the served file where the dependency plugin would put it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "mvn.log"
    (bin_dir / "mvn").write_text(f"""#!{sys.executable}
import sys, urllib.request
from pathlib import Path
args = sys.argv[1:]
Path({str(log)!r}).open("a").write(" ".join(args) + "\\n")
coordinates = next(a for a in args if a.startswith("-Dartifact=")).split("=", 1)[1].split(":")
out = Path(next(a for a in args if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
group, name, version = coordinates[:3]
classifier = coordinates[4] if len(coordinates) > 4 else None
file = f"{{name}}-{{version}}" + (f"-{{classifier}}" if classifier else "") + ".jar"
url = "{spice_jars.MAVEN_CENTRAL}/" + group.replace(".", "/") + f"/{{name}}/{{version}}/{{file}}"
(out / file).write_bytes(urllib.request.urlopen(url).read())
""")
    (bin_dir / "mvn").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    report = spice_jars.setup(tmp_path / "jars", log=lambda text: None, write_config=False)
    assert report.method == "mvn" and len(report.fetched) == 2
    assert (tmp_path / "jars" / "tool-1.0-models.jar").read_bytes() == JARS["b"]
    calls = log.read_text().splitlines()
    assert all(f"{spice_jars.DEPENDENCY_PLUGIN}:copy" in call for call in calls)
    assert "-Dartifact=org.example:tool:1.0:jar:models" in calls[1]


def test_pinned_artifacts_are_the_ones_spice_needs():
    names = [a.file_name for a in spice_jars.ARTIFACTS]
    assert names[:2] == list(spice.CORENLP_JARS)
    assert spice_jars.CORENLP[1].coordinates == "edu.stanford.nlp:stanford-corenlp:3.6.0:jar:models"
    assert spice_jars.CORENLP[0].url == ("https://repo1.maven.org/maven2/edu/stanford/nlp/stanford-corenlp/3.6.0/"
                                         "stanford-corenlp-3.6.0.jar")
    assert all(len(a.sha1) == 40 for a in spice_jars.ARTIFACTS)
    assert spice_jars.default_dir().parts[-2:] == ("vlm-peft-bench", "corenlp")


def test_status_command_says_what_spice_would_use(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), spice.ENV_VAR: str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "vlm_peft_bench.cli", "spice", "status", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["available"] is False
    assert "is not a folder" in report["reason"] and "vlm-peft-bench spice setup" in report["reason"]
    assert report["corenlp_from"] == spice.ENV_VAR
