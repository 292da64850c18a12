"""SPICE: finding CoreNLP, the command, the output, the unavailable reason, and a run through a stand-in jar.

The real CoreNLP 3.6.0 jars are not on this machine (nothing may download them), so the real run skips with the
reason. A stand-in `edu.anu.spice` (same class names, package-private constructors, `-cache/-subset/-silent`
arguments, a `stats.toJSONString()`) compiled here with javac checks everything around it on the real JVM.
"""

import json
import math
import shutil
import socket
import subprocess
import textwrap
import types
import urllib.request
import zipfile

import pytest

import vlm_peft_bench.scoring.spice as spice
import vlm_peft_bench.scoring.spice_jars as spice_jars
from vlm_peft_bench.scoring import caption_scores, spice_status

JARS = spice.CORENLP_JARS


def _empty_jar(path):
    with zipfile.ZipFile(path, "w"):
        pass
    return path


def _corenlp_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    for jar in JARS:
        _empty_jar(path / jar)
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env var, an empty config home and cache home, an empty SPICE lib folder; Java 17 with a compiler."""
    monkeypatch.delenv(spice.ENV_VAR, raising=False)
    monkeypatch.delenv(spice.CACHE_ENV_VAR, raising=False)  # CI points it at a cache kept between runs
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lib = tmp_path / "spice-lib"
    lib.mkdir()
    monkeypatch.setattr(spice, "SPICE_LIB", lib)
    return tmp_path


def _which(path):
    """A stand-in for the `shutil` module as seen by spice.py only, finding `java` at `path`."""
    return types.SimpleNamespace(which=lambda name: path)


@pytest.fixture
def fake_java(monkeypatch):
    monkeypatch.setattr(spice, "shutil", _which("/opt/java/bin/java"))
    monkeypatch.setattr(spice, "java_info", lambda java: (17, True))


# --- where CoreNLP is looked for -------------------------------------------------------------------------------


def test_env_var_wins(isolated, monkeypatch):
    folder = _corenlp_folder(isolated / "corenlp")
    config = isolated / "config" / "vlm-peft-bench" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"corenlp_dir: {isolated / 'elsewhere'}\n")
    monkeypatch.setenv(spice.ENV_VAR, str(folder))
    assert spice.find_corenlp() == folder


def test_config_file_with_a_relative_folder(isolated):
    config = isolated / "config" / "vlm-peft-bench" / "config.yaml"
    folder = _corenlp_folder(config.parent / "jars")
    config.write_text("corenlp_dir: jars\nother: 1\n")
    assert spice.config_path() == config
    assert spice.find_corenlp() == folder


def test_spice_lib_folder_last(isolated):
    assert spice.find_corenlp() is None
    _corenlp_folder(spice.SPICE_LIB)
    assert spice.find_corenlp() == spice.SPICE_LIB


def test_a_wrong_explicit_setting_is_reported_not_skipped(isolated, fake_java, monkeypatch):
    _corenlp_folder(spice.SPICE_LIB)  # a fallback that would work
    monkeypatch.setenv(spice.ENV_VAR, str(isolated / "nowhere"))
    assert spice.find_corenlp() is None
    assert f"{spice.ENV_VAR}={isolated / 'nowhere'} is not a folder" in spice.spice_unavailable_reason()
    half = isolated / "half"
    half.mkdir()
    _empty_jar(half / JARS[0])
    monkeypatch.setenv(spice.ENV_VAR, str(half))
    assert f"lacks {JARS[1]}" in spice.spice_unavailable_reason()
    monkeypatch.delenv(spice.ENV_VAR)
    config = isolated / "config" / "vlm-peft-bench" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("corenlp_dir: [unclosed\n")
    assert "could not be read" in spice.spice_unavailable_reason()


# --- the unavailable reason ------------------------------------------------------------------------------------


def test_reason_says_what_to_download_and_where_to_put_it(isolated, fake_java):
    reason = spice.spice_unavailable_reason()
    assert reason.startswith("SPICE unavailable: Stanford CoreNLP 3.6.0 not found")
    for needle in (spice.ENV_VAR, "vlm-peft-bench spice setup", *JARS, "Maven Central", "Nashorn", "config.yaml"):
        assert needle in reason
    assert spice_status() == reason


def test_reason_without_java_or_without_a_jdk(isolated, monkeypatch):
    monkeypatch.setattr(spice, "shutil", _which(None))
    assert "no `java` on PATH" in spice.spice_unavailable_reason()
    monkeypatch.setattr(spice, "shutil", _which("/opt/jre/bin/java"))
    monkeypatch.setattr(spice, "java_info", lambda java: (17, False))
    assert "CoreNLP" in spice.spice_unavailable_reason()
    monkeypatch.setenv(spice.ENV_VAR, str(_corenlp_folder(isolated / "corenlp")))
    reason = spice.spice_unavailable_reason()  # a JRE 17: no JavaScript engine, no compiler, no Nashorn
    assert "jdk.compiler" in reason and "lacks Nashorn's jars" in reason and "spice setup --dir" in reason
    for artifact in spice_jars.NASHORN:
        _empty_jar(isolated / "corenlp" / artifact.file_name)
    assert spice.spice_unavailable_reason() is None  # with Nashorn the official entry point runs on a JRE
    assert spice.entry_point(17, isolated / "corenlp").startswith("edu.anu.spice.SpiceScorer")
    monkeypatch.setattr(spice, "java_info", lambda java: (11, False))  # Java 8-14 run SPICE itself
    (isolated / "corenlp" / spice_jars.NASHORN[0].file_name).unlink()
    assert spice.spice_unavailable_reason() is None
    assert "Java 11" in spice.entry_point(11, isolated / "corenlp")
    assert spice.entry_point(17, isolated / "corenlp").startswith("our launcher")


def test_unavailable_spice_is_left_out_and_nothing_reaches_the_network(isolated, fake_java, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried the network")

    import pycocoevalcap.spice.get_stanford_models as downloader

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(downloader, "urlretrieve", no_network)
    monkeypatch.setattr(downloader, "get_stanford_models", no_network)
    assert spice.find_corenlp() is None
    assert spice_status().startswith("SPICE unavailable:")
    scores = caption_scores({1: "a dog"}, {1: ["a dog runs"]}, metrics=["Bleu_1", "SPICE"], tokenize=False)
    assert list(scores) == ["Bleu_1"]
    with pytest.raises(spice.SpiceUnavailableError, match="SPICE unavailable"):
        spice.spice_score({1: "a dog"}, {1: ["a dog runs"]})


# --- the command -----------------------------------------------------------------------------------------------

OPENS = [arg for p in spice.OPENED_PACKAGES for arg in ("--add-opens", f"java.base/{p}=ALL-UNNAMED")]


def test_command_on_java_15_and_newer_with_nashorn_is_the_official_one(tmp_path):
    nashorn = [tmp_path / "corenlp" / a.file_name for a in spice_jars.NASHORN]
    cmd = spice.spice_command("in.json", "out.json", "c", tmp_path / "corenlp", java_major=17, spice_jar="s.jar",
                              spice_lib="lib", nashorn=nashorn)
    corenlp = [str(tmp_path / "corenlp" / jar) for jar in JARS]
    assert cmd == ["java", "-Xmx8G", *OPENS, "-cp", ":".join(["s.jar", "lib/*", *corenlp, *map(str, nashorn)]),
                   "edu.anu.spice.SpiceScorer", "in.json", "-cache", "c", "-out", "out.json", "-subset", "-silent"]


def test_command_on_java_15_and_newer_goes_through_the_launcher(tmp_path):
    cmd = spice.spice_command(
        tmp_path / "in.json", tmp_path / "out.json", tmp_path / "cache", tmp_path / "corenlp", java="/j/java",
        java_major=17, runner=tmp_path / "SpiceRunner.java", spice_jar="/s/spice-1.0.jar", spice_lib="/s/lib",
    )  # fmt: skip
    classpath = ":".join(["/s/spice-1.0.jar", "/s/lib/*", *(str(tmp_path / "corenlp" / jar) for jar in JARS)])
    assert cmd == [
        "/j/java", "-Xmx8G", *OPENS, "-cp", classpath, str(tmp_path / "SpiceRunner.java"), str(tmp_path / "out.json"),
        str(tmp_path / "in.json"), "-cache", str(tmp_path / "cache"), "-subset", "-silent",
    ]  # fmt: skip
    assert spice.OPENED_PACKAGES == ("java.lang", "java.util", "java.math", "java.util.concurrent", "java.net",
                                     "java.text")  # fmt: skip
    with pytest.raises(ValueError, match="launcher"):
        spice.spice_command("in", "out", "cache", "corenlp", java_major=21, spice_jar="s.jar", spice_lib="lib")


def test_command_before_java_15_is_the_official_one():
    cmd = spice.spice_command("in.json", "out.json", "c", "nlp", java_major=11, spice_jar="s.jar", spice_lib="lib")
    tail = ["edu.anu.spice.SpiceScorer", "in.json", "-cache", "c", "-out", "out.json", "-subset", "-silent"]
    assert cmd == ["java", "-Xmx8G", *OPENS, "-cp", f"s.jar:lib/*:nlp/{JARS[0]}:nlp/{JARS[1]}", *tail]
    java8 = spice.spice_command("in.json", "out.json", "c", "nlp", java_major=8, spice_jar="s.jar", spice_lib="lib")
    assert "--add-opens" not in java8 and java8[-len(tail) :] == tail


def test_prepare_writes_the_input_and_creates_the_cache_folder(tmp_path):
    cache = tmp_path / "not" / "yet" / "there"
    cmd = spice.prepare_spice_run(["a dog", ""], [["a dog runs"], ["x", "y"]], tmp_path, cache, tmp_path, java_major=17,
                                  spice_jar="s.jar", spice_lib="lib")
    assert cache.is_dir()
    assert json.loads((tmp_path / "in.json").read_text()) == [
        {"image_id": 0, "test": "a dog", "refs": ["a dog runs"]},
        {"image_id": 1, "test": "", "refs": ["x", "y"]},
    ]
    assert (tmp_path / spice.RUNNER_FILE).read_text() == spice.RUNNER_SOURCE
    assert cmd[cmd.index(str(tmp_path / spice.RUNNER_FILE)) + 1] == str(tmp_path / "out.json")


def test_java_version_is_read_from_java_itself(tmp_path):
    def fake(name, version, modules):
        script = tmp_path / name
        script.write_text(
            textwrap.dedent(f"""\
                #!/bin/sh
                if [ "$1" = "-version" ]; then echo '{version}' >&2; else printf '{modules}'; fi
                """)
        )
        script.chmod(0o755)
        return str(script)

    assert spice.java_info(fake("j8", 'java version "1.8.0_402"', "")) == (8, False)
    assert spice.java_info(fake("jre17", 'openjdk version "17.0.15" 2025-04-15', "java.base@17\\n")) == (17, False)
    jdk = fake("jdk21", 'openjdk version "21" 2023-09-19', "java.base@21\\njdk.compiler@21\\n")
    assert spice.java_info(jdk) == (21, True)
    assert spice.java_info(str(tmp_path / "missing")) == (None, False)


# --- the output ------------------------------------------------------------------------------------------------

SAMPLE = """[
  {"image_id": 0, "scores": {
    "All": {"f": 0.25, "pr": 0.2857142857142857, "re": 0.2222222222222222, "tp": 2, "fp": 5, "fn": 7, "numImages": 1},
    "Relation": {"f": 0.0, "pr": 0.0, "re": 0.0, "tp": 0, "fp": 2, "fn": 3, "numImages": 1},
    "Cardinality": {"f": NaN, "pr": NaN, "re": NaN, "tp": 0, "fp": 0, "fn": 0, "numImages": 1},
    "Attribute": {"f": 0.0, "pr": 0.0, "re": 0.0, "tp": 0, "fp": 1, "fn": 2, "numImages": 1},
    "Size": {"f": NaN, "pr": NaN, "re": NaN, "tp": 0, "fp": 0, "fn": 0, "numImages": 1},
    "Color": {"f": 0.0, "pr": 0.0, "re": 0.0, "tp": 0, "fp": 0, "fn": 1, "numImages": 1},
    "Object": {"f": 0.5, "pr": 0.5, "re": 0.5, "tp": 2, "fp": 2, "fn": 2, "numImages": 1}}},
  {"image_id": 1, "scores": {
    "All": {"f": 0.6, "pr": 0.75, "re": 0.5, "tp": 3, "fp": 1, "fn": 3, "numImages": 1},
    "Object": {"f": 0.8, "pr": 1.0, "re": 0.6666666666666666, "tp": 2, "fp": 0, "fn": 1, "numImages": 1}}}
]"""


def test_parse_output(tmp_path):
    path = tmp_path / "out.json"
    path.write_text(SAMPLE)
    out = spice.parse_spice_output(path)
    assert out.score == pytest.approx((0.25 + 0.6) / 2)
    assert out.per_image == {0: 0.25, 1: 0.6}
    assert math.isnan(out.subsets[0]["Size"]["f"]) and out.subsets[1]["Object"]["re"] == pytest.approx(2 / 3)
    assert spice.parse_spice_output(json.loads(SAMPLE)) == out


def test_parse_output_keeps_pycocoevalcaps_nan_and_rejects_garbage(tmp_path):
    data = json.loads(SAMPLE)
    data[1]["scores"]["All"]["f"] = None  # pycocoevalcap's float_convert makes it NaN, and np.mean then NaN
    assert math.isnan(spice.parse_spice_output(data).score)
    with pytest.raises(ValueError, match="non-empty list"):
        spice.parse_spice_output([])
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match="non-empty list"):
        spice.parse_spice_output(tmp_path / "empty.json")
    with pytest.raises(ValueError, match="missing 'All'"):
        spice.parse_spice_output([{"image_id": 0, "scores": {"Object": {"f": 1.0}}}])


# --- a run through a stand-in SPICE jar ------------------------------------------------------------------------

FAKE_SOURCES = {
    "SpiceArguments.java": """
        package edu.anu.spice;

        public class SpiceArguments {
            String inputPath;
            String cache;
            boolean subset;
            boolean silent;

            SpiceArguments(String[] args) {
                inputPath = args[0];
                for (int i = 1; i < args.length; i++) {
                    if (args[i].equals("-cache")) cache = args[++i];
                    else if (args[i].equals("-subset")) subset = true;
                    else if (args[i].equals("-silent")) silent = true;
                    else throw new IllegalArgumentException("Unknown option \\"" + args[i] + "\\"");
                }
            }
        }
        """,
    "SpiceScorer.java": """
        package edu.anu.spice;

        import java.nio.charset.StandardCharsets;
        import java.nio.file.Files;
        import java.nio.file.Paths;
        import java.util.ArrayList;
        import java.util.List;
        import java.util.regex.Matcher;
        import java.util.regex.Pattern;

        public class SpiceScorer {
            public FakeStats stats;

            SpiceScorer() {}

            public void scoreBatch(SpiceArguments args) throws Exception {
                if (args.cache == null || !Files.isDirectory(Paths.get(args.cache))) {
                    throw new IllegalStateException("no cache folder " + args.cache);
                }
                if (!args.subset || !args.silent) throw new IllegalStateException("expected -subset -silent");
                String input = new String(Files.readAllBytes(Paths.get(args.inputPath)), StandardCharsets.UTF_8);
                if (input.contains("FAIL")) throw new IllegalStateException("stand-in SPICE failure");
                Matcher m = Pattern.compile("\\"image_id\\": (\\\\d+)").matcher(input);
                List<Integer> ids = new ArrayList<>();
                while (m.find()) ids.add(Integer.parseInt(m.group(1)));
                stats = new FakeStats(ids);
            }
        }
        """,
    "FakeStats.java": """
        package edu.anu.spice;

        import java.util.List;

        public class FakeStats {
            private final List<Integer> ids;

            FakeStats(List<Integer> ids) { this.ids = ids; }

            public String toJSONString() {
                StringBuilder out = new StringBuilder("[");
                for (int k = 0; k < ids.size(); k++) {
                    double f = (ids.get(k) + 1) / 10.0;
                    out.append(k == 0 ? "" : ",").append("{\\"image_id\\":").append(ids.get(k))
                       .append(",\\"scores\\":{\\"All\\":{\\"f\\":").append(f).append(",\\"pr\\":").append(f)
                       .append(",\\"re\\":").append(f).append("},\\"Size\\":{\\"f\\":NaN,\\"pr\\":NaN,\\"re\\":NaN}}}");
                }
                return out.append("]").toString();
            }
        }
        """,
}


@pytest.fixture(scope="module")
def stand_in_jar(tmp_path_factory):
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("needs a JDK (javac, java) to build the stand-in SPICE jar")
    root = tmp_path_factory.mktemp("fake-spice")
    sources = []
    for name, text in FAKE_SOURCES.items():
        (root / name).write_text(textwrap.dedent(text))
        sources.append(str(root / name))
    subprocess.run(["javac", "-d", str(root / "classes"), *sources], check=True, capture_output=True)
    jar = root / "spice-1.0.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        for path in (root / "classes").rglob("*.class"):
            archive.write(path, path.relative_to(root / "classes").as_posix())
    return jar


@pytest.fixture
def stand_in(isolated, stand_in_jar, monkeypatch):
    monkeypatch.setattr(spice, "SPICE_JAR", stand_in_jar)
    monkeypatch.setenv(spice.ENV_VAR, str(_corenlp_folder(isolated / "corenlp")))
    if spice.spice_unavailable_reason() is not None:
        pytest.skip(spice.spice_unavailable_reason())
    return isolated


def test_stand_in_run_through_caption_scores(stand_in, monkeypatch):
    cache = stand_in / "spice" / "cache"
    monkeypatch.setenv(spice.CACHE_ENV_VAR, str(cache))
    predictions = {"x": "a dog", "y": "", "z": "two cats"}
    references = {"x": ["a dog runs"], "y": ["a plate"], "z": ["cats", "two cats sleep"]}
    scores = caption_scores(predictions, references, ["SPICE", "Bleu_1"], tokenize=False)
    assert list(scores) == ["Bleu_1", "SPICE"]
    assert scores["SPICE"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)  # the stand-in gives image i the F-score (i+1)/10
    assert cache.is_dir()


def test_stand_in_run_default_cache_and_failure(stand_in):
    assert spice.spice_score({"a": "a dog"}, {"a": ["a dog runs"]}) == pytest.approx(0.1)
    assert spice.default_cache_dir() == stand_in / "cache" / "vlm-peft-bench" / "spice"
    assert spice.default_cache_dir().is_dir()
    with pytest.raises(RuntimeError, match="(?s)SPICE failed .*stand-in SPICE failure"):
        spice.spice_score({"a": "FAIL"}, {"a": ["a dog runs"]})


def test_spice_job_is_killed_when_not_awaited(stand_in):
    job = spice.SpiceJob(["a dog"], [["a dog runs"]])
    with job:
        pass
    assert job._proc.poll() is not None
