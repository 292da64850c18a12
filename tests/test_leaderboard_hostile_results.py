"""Hostile inputs to `vlm-peft-bench leaderboard build`: results files that are truncated, empty, not JSON or
from another layout or provenance version; sample logs cut off, corrupt or from another run; broken adapter
cards, repr-rank files and reported-results YAML. Each gives an error naming the file and what is wrong (every
bad file at once, never a traceback), or, for a log cut off by a killed run, keeps the scores and records why
there is no interval; --skip-bad leaves bad files out and names them. A failing build changes no output."""

import gzip
import json
import os

import pytest
import yaml

from vlm_peft_bench import atomic
from vlm_peft_bench.cli import main
from vlm_peft_bench.leaderboard import LeaderboardError, plots
from vlm_peft_bench.leaderboard.build import OUTPUTS, build, collect
from vlm_peft_bench.leaderboard.document import SCHEMA
from vlm_peft_bench.leaderboard.problems import BadFile, BadInputs
from vlm_peft_bench.leaderboard.results import read_results
from vlm_peft_bench.leaderboard.samples import read_samples

from .test_leaderboard_factory import write_card, write_run


@pytest.fixture
def good(tmp_path):
    """A results folder with one finished run of the base (60 items, with its sample log)."""
    results = tmp_path / "results"
    write_run(results / "base", "20260101_000000", accuracy=0.4, seed=1)
    return results


def _bad_results(results):
    """Four unusable results files beside the good run: cut mid-file, empty, not JSON, not text."""
    folder = results / "bad" / "nanollava-tiny"
    folder.mkdir(parents=True)
    whole = (results / "base" / "nanollava-tiny" / "20260101_000000_results.json").read_text()
    (folder / "20260201_000000_results.json").write_text(whole[: len(whole) // 2])
    (folder / "20260202_000000_results.json").write_bytes(b"")
    (folder / "20260203_000000_results.json").write_text("<html>502 Bad Gateway</html>\n")
    (folder / "20260204_000000_results.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return [f"bad/nanollava-tiny/2026020{i}_000000_results.json" for i in (1, 2, 3, 4)]


def _cell(doc):
    (row,) = [r for r in doc["rows"] if r["kind"] == "measured"]
    (cell,) = row["cells"].values()
    return cell


def _samples_file(results, stamp="20260101_000000"):
    return results / "base" / "nanollava-tiny" / f"{stamp}_samples_cvbench_mini.jsonl"


# --- results files that cannot be read ---------------------------------------------------------------------------


def test_unreadable_results_files_are_all_named_at_once(good):
    names = _bad_results(good)
    with pytest.raises(BadInputs) as refused:
        collect([good])
    message = str(refused.value)
    assert message.startswith("4 input files cannot be used (nothing was written):")
    assert [p.file.endswith(n) for p, n in zip(refused.value.problems, names)] == [True] * 4
    cut, empty, html, binary = (p.what for p in refused.value.problems)
    assert cut.startswith("truncated: the JSON ends before it is complete") and "interrupted" in cut
    assert empty == "empty (0 bytes): the run that was writing it did not finish"
    assert html == "not valid JSON: Expecting value at line 1, column 1"
    assert binary == "not UTF-8 text (byte 0x89 at offset 0): not a JSON file"
    assert "re-run the evaluation with `lmms_eval --model vlreft" in message and "--skip-bad" in message


def test_cli_refuses_without_a_traceback(good, tmp_path, capsys):
    _bad_results(good)
    with pytest.raises(SystemExit) as done:
        main(["leaderboard", "build", "--results", str(good), "--out", str(tmp_path / "out")])
    assert done.value.code == 2
    assert capsys.readouterr().err.startswith("vlm-peft-bench leaderboard build: 4 input files cannot be used")
    assert not (tmp_path / "out").exists()


def test_skip_bad_leaves_them_out_warns_and_records_them(good, tmp_path, capsys):
    names = _bad_results(good)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        main(["leaderboard", "build", "--results", str(good), "--out", str(out), "--skip-bad"])
    assert done.value.code == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 4 and all(w.startswith("warning: skipped ") for w in warnings)
    doc = json.loads((out / "leaderboard.json").read_text())
    assert [s["file"].endswith(n) for s, n in zip(doc["inputs"]["skipped"], names)] == [True] * 4
    assert doc["inputs"]["skipped"][1]["problem"] == "empty (0 bytes): the run that was writing it did not finish"
    assert sum(n.startswith("skipped ") and "(--skip-bad)" in n for n in doc["notes"]) == 4
    assert doc["command"].endswith("--skip-bad") and len(doc["inputs"]["results"]) == 1
    assert _cell(doc)["metrics"]["cvbench_combined"]["ci95"] is not None  # the good run is whole
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, SCHEMA)


def test_nothing_but_bad_files_is_no_leaderboard(tmp_path):
    folder = tmp_path / "r" / "x"
    folder.mkdir(parents=True)
    (folder / "20260101_000000_results.json").write_text("")
    with pytest.raises(LeaderboardError, match=r"no results: .*\(1 bad files left out\)"):
        collect([tmp_path / "r"], skip_bad=True)


# --- results files from another layout or version ----------------------------------------------------------------


def _mutated(good, change):
    path = good / "base" / "nanollava-tiny" / "20260101_000000_results.json"
    data = json.loads(path.read_text())
    data = change(data)
    path.write_text(json.dumps(data))
    return path


def _drop(*keys):
    def change(data):
        for key in keys:
            data.pop(key)
        return data
    return change


def _set(where, value):
    def change(data):
        target = data
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
        return data
    return change


HARNESS_03 = {"results": {"hellaswag": {"acc": 0.5, "acc_stderr": 0.01}}, "versions": {"hellaswag": 0},
              "config": {"model": "hf-causal", "model_args": "pretrained=gpt2", "num_fewshot": 0}}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: [d], "holds a list, not an lmms-eval results object (one with 'results', 'configs' and 'config')"),
    (lambda d: "results", "holds a string, not an lmms-eval results object"),
    (_drop("results"), "not an lmms-eval results file: no 'results' (task scores)"),
    (_drop("configs", "config"), "no 'configs' (per-task settings), 'config' (run settings)"),
    (lambda d: HARNESS_03, "an lm-evaluation-harness results file from before 0.4 (no 'configs'; metrics named"),
    (_set(["results"], {}), "'results' is empty (no task was scored)"),
    (_set(["results", "cvbench_mini"], [0.5]), "'results.cvbench_mini' is a list, expected an object"),
    (_set(["results", "cvbench_mini"], {"alias": "x", "accuracy": 0.5}), "names its metrics without a filter"),
    (_set(["n-samples"], [60]), "'n-samples' is a list, expected an object"),
    (_set(["n-samples", "cvbench_mini", "effective"], "60"), "'n-samples.cvbench_mini.effective' is a string"),
    (_set(["configs", "cvbench_mini", "generation_kwargs"], "greedy"),
     "'configs.cvbench_mini.generation_kwargs' is a string, expected an object"),
    (_set(["vlm_peft_bench"], "nanollava-tiny"), "'vlm_peft_bench' (the provenance block) is a string"),
    (_set(["vlm_peft_bench", "adapter"], "zoo/x"), "'vlm_peft_bench.adapter' is a string, expected an object"),
    (_set(["vlm_peft_bench"], {"versions": {}}),
     "'vlm_peft_bench' (the provenance block) has no 'pretrained'"),
])
def test_other_layouts_are_refused_naming_the_field(good, change, expected):
    path = _mutated(good, change)
    with pytest.raises(BadFile) as refused:
        read_results(path)
    assert refused.value.problem.file.endswith("base/nanollava-tiny/20260101_000000_results.json")
    assert expected in refused.value.problem.what
    assert refused.value.problem.fix.startswith("re-run the evaluation")


def test_unknown_provenance_version_is_refused_and_version_1_or_none_accepted(good):
    path = _mutated(good, _set(["vlm_peft_bench", "schema_version"], 2))
    with pytest.raises(BadFile) as refused:
        read_results(path)
    assert refused.value.problem.what == ("'vlm_peft_bench.schema_version' is 2: written by another version of "
                                          "vlm-peft-bench (this one reads provenance version 1)")
    assert refused.value.problem.fix == "upgrade vlm-peft-bench to the version that wrote it, or remove the file"
    _mutated(good, _set(["vlm_peft_bench", "schema_version"], 1))
    _mutated(good, _set(["vlm_peft_bench", "failures"], [{"task": "cvbench_mini", "doc_id": 3}]))  # additive
    (result,) = read_results(path)
    assert result.base["hash"] == "b" * 64 and result.provenance


def test_results_without_provenance_are_kept_apart_with_a_note(good):
    write_run(good / "plain", "20260102_000000", adapter="lora-r8", accuracy=0.6, seed=2)
    plain = good / "plain" / "nanollava-tiny" / "20260102_000000_results.json"
    plain.write_text(json.dumps(_drop("vlm_peft_bench")(json.loads(plain.read_text()))))
    doc = collect([good])
    assert [(b["label"], b["base"]["hash"]) for b in doc["boards"]] == [("nanollava-tiny", None),
                                                                       ("nanollava-tiny #2", "b" * 64)]
    (note,) = [n for n in doc["notes"] if "provenance block" in n]
    assert note == (f"{plain.as_posix()}: no vlm_peft_bench provenance block (plain lmms-eval, an older "
                    "vlm-peft-bench, or a run stopped before the block was written): base and adapter hashes "
                    "unknown, so its rows are kept apart from results that have them")


# --- sample logs -------------------------------------------------------------------------------------------------


def test_log_cut_off_by_a_killed_run_keeps_the_scores_without_an_interval(good):
    log = _samples_file(good)
    text = log.read_text()
    log.write_text(text[: len(text) - 25])  # the last record half written
    doc = collect([good])
    cell = _cell(doc)
    assert cell["metrics"]["cvbench_combined"]["value"] is not None  # the finished scores stay
    assert cell["metrics"]["cvbench_combined"]["ci95"] is None and cell["inputs_sha256"] is None
    assert cell["ci_note"] == "n/a: sample log incomplete (line 60 is cut off; 59 of 60 records)"
    assert cell["samples_file"].endswith("20260101_000000_samples_cvbench_mini.jsonl")
    (note,) = doc["notes"]
    assert "20260101_000000_samples_cvbench_mini.jsonl: sample log incomplete (line 60 is cut off" in note
    assert "keeps its scores, without an interval; re-run that evaluation for one" in note


def test_incomplete_logs_read_as_incomplete(tmp_path):
    lines = [json.dumps({"doc_id": i, "x": i}) + "\n" for i in range(10)]
    plain = tmp_path / "a.jsonl"
    plain.write_text("".join(lines[:6]))  # cut exactly at a line end
    assert read_samples(plain, expected=10).incomplete == "6 of 10 records"
    plain.write_text("")
    assert read_samples(plain, expected=10).incomplete == "0 of 10 records"
    assert read_samples(plain).incomplete == "0 records"
    packed = tmp_path / "a.jsonl.gz"
    data = gzip.compress("".join(lines).encode())
    packed.write_bytes(data[: len(data) - 12])  # the stream's end and checksum missing
    log = read_samples(packed, expected=10)
    assert "the gzip stream ends early" in log.incomplete and log.incomplete.endswith("of 10 records")
    packed.write_bytes(data)
    whole = read_samples(packed, expected=10)
    assert whole.incomplete is None and [r["doc_id"] for r in whole.records] == list(range(10))


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda lines: lines[:6] + ['{"doc_id": 6, "x": \n'] + lines[7:], r"line 7 is not JSON \(Expecting value"),
    (lambda lines: lines[:2] + [b"\xff\xfe\n".decode("latin-1")] + lines[3:],
     r"line 3 is not UTF-8 \(byte 0xff at column 1\)"),
    (lambda lines: lines[:3] + ["[1, 2]\n"] + lines[4:], r"line 4 is a list, not a sample record"),
    (lambda lines: lines[:4] + ['{"x": 1}\n'] + lines[5:], r"line 5 has no integer doc_id"),
    (lambda lines: lines[:9] + [lines[3]], r"doc_id 3 is on lines 4 and 10"),
    (lambda lines: lines + [json.dumps({"doc_id": 10}) + "\n"],
     r"holds 11 records but its results file counts 10 items \(n-samples\): the log is not from that run"),
    (lambda lines: lines + ['{"doc_id": 1'], r"line 11 is not JSON .*after all 10 records"),
])
def test_corrupt_or_foreign_logs_are_refused_naming_the_line(tmp_path, damage, expected):
    lines = [json.dumps({"doc_id": i, "x": i}) + "\n" for i in range(10)]
    path = tmp_path / "run_samples_cvbench_mini.jsonl"
    path.write_text("".join(damage(lines)), encoding="latin-1")
    with pytest.raises(BadFile, match=expected) as refused:
        read_samples(path, "shown/run_samples_cvbench_mini.jsonl", expected=10)
    assert refused.value.problem.file == "shown/run_samples_cvbench_mini.jsonl"
    assert "re-run that evaluation with --log_samples, or remove the log" in refused.value.problem.fix


def test_corrupt_gzip_log_is_refused(tmp_path):
    path = tmp_path / "x_samples_t.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(BadFile, match="not a readable gzip stream"):
        read_samples(path, expected=3)


def test_corrupt_log_in_a_build_is_refused_or_left_out_keeping_the_scores(good):
    log = _samples_file(good)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:6] + ["garbage\n"] + lines[7:]))
    with pytest.raises(BadInputs) as refused:
        collect([good])
    (problem,) = refused.value.problems
    assert problem.file.endswith("20260101_000000_samples_cvbench_mini.jsonl")
    assert problem.what == "line 7 is not JSON (Expecting value at column 1)"
    doc = collect([good], skip_bad=True)
    cell = _cell(doc)
    assert cell["metrics"]["cvbench_combined"]["value"] is not None and cell["samples_file"] is None
    assert cell["ci_note"] == "n/a: sample log left out (line 7 is not JSON (Expecting value at column 1))"
    assert doc["inputs"]["samples"] == [] and doc["inputs"]["skipped"][0]["file"] == problem.file


def test_log_without_the_per_item_values_gives_no_interval(good):
    log = _samples_file(good)
    log.write_text("".join(json.dumps({"doc_id": i, "input": "q"}) + "\n" for i in range(60)))
    cell = _cell(collect([good]))
    assert cell["metrics"]["cvbench_combined"]["ci95"] is None
    assert cell["ci_note"].startswith("n/a: the sample log's records cannot be scored")


# --- nothing already built is lost -------------------------------------------------------------------------------


def _snapshot(out):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.iterdir())}


def test_a_failing_build_leaves_the_previous_outputs_untouched(good, tmp_path, monkeypatch):
    out = tmp_path / "out"
    build([good], out)
    before = _snapshot(out)
    assert set(before) == set(OUTPUTS)

    _bad_results(good)  # bad input: refused before anything is rendered
    with pytest.raises(BadInputs):
        build([good], out)
    assert _snapshot(out) == before
    for bad in (good / "bad").rglob("*.json"):
        bad.unlink()

    def broken_plot(doc):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "scatter_figure", broken_plot)  # a failure while rendering
    with pytest.raises(RuntimeError):
        build([good], out)
    assert _snapshot(out) == before
    monkeypatch.undo()

    calls = []

    def disk_full(fd):
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)  # a failure half-way through writing
    write_run(good / "lora", "20260103_000000", adapter="lora-r8", accuracy=0.6, seed=2)
    with pytest.raises(LeaderboardError, match="cannot write the outputs into .*No space left on device; the "
                                               "previous outputs there are unchanged"):
        build([good], out)
    assert _snapshot(out) == before  # no file replaced, no temporary left behind
    monkeypatch.undo()
    build([good], out)  # and once the disk has room, the new run is in
    assert len(json.loads((out / "leaderboard.json").read_text())["inputs"]["results"]) == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert oct(os.stat(out / "index.html").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- cards, repr-rank files, reported rows -----------------------------------------------------------------------


def test_bad_cards_are_named_and_can_be_left_out(good, tmp_path):
    zoo = tmp_path / "zoo"
    write_card(zoo, "lora-r8", "lora", 32_768)
    (zoo / "broken.yaml").write_text("id: broken\nparams: {trainable: 3\n")
    (zoo / "cut.yaml").write_text(json.dumps({"id": "cut", "method": "lora"})[:20])
    (zoo / "list.yaml").write_text("- a\n- b\n")
    (zoo / "empty.yaml").write_text("")
    card = yaml.safe_load((zoo / "lora-r8.yaml").read_text())
    del card["adapter_hash"], card["params"]["fraction"]
    card["params"]["total"] = "lots"
    (zoo / "fields.yaml").write_text(yaml.safe_dump(card))
    write_run(good / "lora", "20260103_000000", adapter="lora-r8", accuracy=0.6, seed=2)
    with pytest.raises(BadInputs) as refused:
        collect([good], zoo=zoo)
    problems = {p.file.rsplit("/", 1)[-1]: p.what for p in refused.value.problems}
    assert set(problems) == {"broken.yaml", "cut.yaml", "list.yaml", "empty.yaml", "fields.yaml"}
    assert problems["broken.yaml"].startswith("not valid YAML (") and "line 3" in problems["broken.yaml"]
    assert problems["cut.yaml"].startswith("not valid YAML (")
    assert problems["list.yaml"] == "holds a list, not an adapter card (a mapping)"
    assert problems["empty.yaml"] == "empty: not an adapter card"
    assert problems["fields.yaml"] == ("adapter card with no adapter_hash; params.total is a string 'lots', "
                                       "expected a whole number > 0; no params.fraction")
    assert "move it out of the zoo folder" in str(refused.value)
    doc = collect([good], zoo=zoo, skip_bad=True)
    assert doc["inputs"]["cards"] == [f"{zoo.as_posix()}/lora-r8.yaml"]
    assert len(doc["inputs"]["skipped"]) == 5
    lora = next(r for r in doc["rows"] if r["label"] == "lora-r8")
    assert lora["params"]["source"] == "card"


def test_bad_repr_rank_files_are_named(good):
    folder = good / "repr_rank"
    folder.mkdir()
    (folder / "repr_rank__a.json").write_text('{"schema": "vlm-peft-bench/repr-rank", "schema_ver')
    (folder / "repr_rank__b.json").write_text(json.dumps({"schema": "vlm-peft-bench/repr-rank",
                                                          "schema_version": "2.0"}))
    (folder / "repr_rank__c.json").write_text(json.dumps({"schema": "vlm-peft-bench/repr-rank",
                                                          "schema_version": "1.0", "task": "cvbench_mini"}))
    (folder / "repr_rank__other.json").write_text(json.dumps({"schema": "someone-else"}))  # not ours: ignored
    with pytest.raises(BadInputs) as refused:
        collect([good])
    a, b, c = (p.what for p in refused.value.problems)
    assert a.startswith("truncated: the JSON ends before it is complete")
    assert b == "repr-rank schema_version is '2.0': written by another version of vlm-peft-bench (this one reads 1.0)"
    assert c.startswith("repr-rank document with no base; no adapter; no effective_rank_ratio")
    assert len(collect([good], skip_bad=True)["inputs"]["skipped"]) == 3


def test_bad_reported_yaml_is_refused_even_with_skip_bad(good, tmp_path):
    reported = tmp_path / "reported.yaml"
    reported.write_text("schema_version: 1\nsources:\n  - id: x\n    rows: [\n")
    with pytest.raises(BadInputs, match=r"reported.yaml: not valid YAML .*line \d+") as refused:
        collect([good], reported=reported, skip_bad=True)
    assert "never the reported-results file" in str(refused.value)
    reported.write_text(yaml.safe_dump({"schema_version": 1, "sources": [
        {"id": "x", "title": "t", "base": "b", "task": "cvbench", "setting": "s", "metric": "accuracy",
         "unit": "percent", "rows": [{"method": "lora", "label": "L", "trainable_percent": "much", "value": 1}]},
        "not a source"]}))
    with pytest.raises(BadInputs) as refused:
        collect([good], reported=reported)
    (problem,) = refused.value.problems
    assert problem.what == ("source x: row 0: trainable_percent and value must be numbers; source 1 is a string, "
                            "expected a mapping")


def test_model_args_as_an_object_is_read_like_the_string(good):
    path = _mutated(good, _set(["config", "model_args"], {"pretrained": "nanollava-tiny", "adapter": "zoo/x"}))
    _mutated(good, _set(["vlm_peft_bench"], None))
    (result,) = read_results(path)
    assert result.model_args == "pretrained=nanollava-tiny,adapter=zoo/x"
    assert result.adapter == {"path": "zoo/x", "sha256": None} and not result.provenance


def test_repr_rank_files_are_written_whole(tmp_path):
    from vlm_peft_bench.measure.repr_rank import write

    document = {"adapter": None, "base": {"name": "nanollava-tiny"}, "task": "cvbench_mini", "n": 3}
    path = write(document, tmp_path)
    assert json.loads(path.read_text()) == document and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_the_block_our_lmms_eval_writes_is_read(tmp_path):
    """Writer and reader agree: a results file after add_provenance (schema_version included) reads cleanly."""
    from vlm_peft_bench.lmms.cli import add_provenance

    path = write_run(tmp_path, "2026-01-01T00-00-00")
    data = json.loads(path.read_text())
    del data["vlm_peft_bench"]
    path.write_text(json.dumps(data))
    add_provenance(path, "pretrained=nanollava-tiny", failures=[])
    block = json.loads(path.read_text())["vlm_peft_bench"]
    assert block["schema_version"] == 1 and block["pretrained"] == "nanollava-tiny"
    [result] = read_results(path)
    assert result.task == "cvbench_mini"
