"""One error base, and command lines whose exit status tells the truth.

Every expected failure derives from `VlmPeftBenchError` (checked on the source, so a new class cannot forget it);
the CLIs print its message with no traceback and exit 2; anything else keeps its traceback. Our `lmms_eval`
exits non-zero whenever an evaluation did not complete (lmms-eval's own `cli_evaluate` logs the error and exits 0).
"""

import ast
import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_peft_bench.errors import OutFolderError, VlmPeftBenchError

from .conftest import REPO

PACKAGE = REPO / "vlm_peft_bench"
BIN = Path(sys.executable).parent
LORA = REPO / "adapters_zoo" / "weights" / "lora-r8__nanollava-tiny__cvbench_mini"
RUN = ["--model", "vlreft", "--tasks", "cvbench_mini", "--batch_size", "4", "--limit", "8"]
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}
# Not errors: classes that only carry an exception through code that catches every `Exception`.
CARRIERS = {"_EvaluationFailed"}


def package_classes() -> dict[str, list[str]]:
    """Every class defined in vlm_peft_bench/, by name: the names of its bases, read from the source."""
    classes: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                assert node.name not in classes, f"{path}: class {node.name} is defined twice; the check needs names"
                classes[node.name] = bases
    return classes


def test_every_exception_class_in_the_package_derives_from_the_base():
    classes = package_classes()

    def ancestors(name: str) -> set[str]:
        found, todo = set(), list(classes.get(name, []))
        while todo:
            base = todo.pop()
            if base not in found:
                found.add(base)
                todo.extend(classes.get(base, []))
        return found

    def is_exception(name: str) -> bool:
        return any(b in BUILTIN_EXCEPTIONS or b.endswith(("Error", "Exception")) for b in ancestors(name))

    exceptions = {name for name in classes if is_exception(name)}
    assert {"AdapterError", "AnswerLogError", "BadSampleError", "DatasetError", "LayoutError", "CheckpointError",
            "SpiceUnavailableError", "UnscorableLog", "LeaderboardError", "BadFile", "BadInputs",
            "OutFolderError", "EvaluationError"} <= exceptions  # the scan sees them all
    carriers = {name for name in exceptions if classes[name] == ["BaseException"]}
    assert carriers == CARRIERS
    outside = sorted(name for name in exceptions - carriers - {"VlmPeftBenchError"}
                     if "VlmPeftBenchError" not in ancestors(name))
    assert outside == [], f"derive these from vlm_peft_bench.errors.VlmPeftBenchError: {outside}"


@pytest.mark.parametrize("module, name, builtin", [
    ("vlm_peft_bench.adapters.detect", "AdapterError", ValueError),
    ("vlm_peft_bench.leaderboard", "LeaderboardError", ValueError),
    ("vlm_peft_bench.scoring.spice", "SpiceUnavailableError", RuntimeError),
    ("vlm_peft_bench.errors", "OutFolderError", FileExistsError),
])
def test_expected_failures_keep_their_builtin_base(module, name, builtin):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, VlmPeftBenchError) and issubclass(cls, builtin)


# --- vlm-peft-bench --------------------------------------------------------------------------------------------

def test_train_into_a_folder_holding_another_adapter_exits_2_with_one_line(tmp_path, capsys):
    from vlm_peft_bench.cli import main

    out = tmp_path / "out"
    shutil.copytree(LORA, out)
    with pytest.raises(SystemExit) as done:
        main(["train", "--recipe", "reft-r4-all", "--task", "cvbench_mini", "--out", str(out), "--no-card"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err == (f"vlm-peft-bench train: --out {out}: the folder already holds a peft adapter, and a reft recipe "
                   "writes a pyreft one; choose another --out or delete the folder\n")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in LORA.iterdir())  # nothing written


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    import vlm_peft_bench.cli as cli

    def broken(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(cli, "_tasks_path", broken)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["tasks-path"])


def test_an_out_folder_error_is_still_a_file_exists_error(tmp_path):
    from vlm_peft_bench.train.trainer import check_out_folder

    with pytest.raises(OutFolderError, match="already holds a peft adapter") as raised:
        check_out_folder(LORA, "reft")
    assert isinstance(raised.value, FileExistsError)


# --- our lmms_eval: a failed evaluation never exits 0 ----------------------------------------------------------

def lmms_eval(cwd: Path, *args: str, patch: str = "") -> subprocess.CompletedProcess:
    """Our `lmms_eval` in a fresh process; `patch` is Python run first (to make the model fail mid-run)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if patch:
        script = f"import sys\nfrom vlm_peft_bench.lmms import cli, vlreft\n{patch}\ncli.main()\n"
        cmd = [sys.executable, "-c", script, *args]
    else:
        cmd = [str(BIN / "lmms_eval"), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def our_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("lmms_eval: ")]


def assert_expected_failure(proc: subprocess.CompletedProcess, message: str) -> None:
    """Status 2 and the reason on one line of stderr, with no traceback anywhere."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert our_lines(proc) == [f"lmms_eval: {message}"] == proc.stderr.splitlines()[-1:]
    assert "Traceback" not in output and "Error during evaluation" not in output


def test_missing_adapter_exits_2_with_one_line_and_writes_nothing(tmp_path):
    proc = lmms_eval(tmp_path, *RUN, "--model_args", "pretrained=nanollava-tiny,adapter=/no/such/folder",
                     "--output_path", str(tmp_path / "out"))
    assert_expected_failure(proc, "adapter='/no/such/folder': no such folder (pass the folder the adapter was "
                                  "saved to)")
    assert not list(tmp_path.rglob("*_results.json"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated weights", "garbage config"])
def test_corrupt_adapter_exits_2(tmp_path, damage):
    adapter = tmp_path / "adapter"
    shutil.copytree(LORA, adapter)
    if damage == "truncated weights":
        weights = adapter / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        message = "truncated or corrupt"
    else:
        (adapter / "adapter_config.json").write_text("{not json")
        message = "adapter_config.json"
    proc = lmms_eval(tmp_path, *RUN, "--model_args", f"pretrained=nanollava-tiny,adapter={adapter}",
                     "--output_path", str(tmp_path / "out"))
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    [line] = our_lines(proc)
    assert message in line and str(adapter) in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("*_results.json"))


FAIL_ON_SECOND_BATCH = """
real = vlreft.VLReft._answer
batches = []
def second_batch_fails(self, *args, **kwargs):
    batches.append(1)
    if len(batches) == 2:
        raise {error}
    return real(self, *args, **kwargs)
vlreft.VLReft._answer = second_batch_fails
"""


def answers_logged(out: Path) -> int:
    [log] = list(out.glob("vlreft_answers/answers-*-rank0.jsonl"))
    return len(log.read_text().splitlines()) - 1  # the header


@pytest.mark.slow
def test_model_failing_mid_run_with_a_bug_exits_non_zero_with_its_traceback(tmp_path):
    out = tmp_path / "out"
    patch = FAIL_ON_SECOND_BATCH.format(error='RuntimeError("generation broke on the second batch")')
    proc = lmms_eval(tmp_path, *RUN, "--model_args", "pretrained=nanollava-tiny", "--output_path", str(out),
                     patch=patch)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" in proc.stderr and "in second_batch_fails" in proc.stderr
    assert "RuntimeError: generation broke on the second batch" in proc.stderr.splitlines()
    assert our_lines(proc) == []
    assert not list(out.rglob("*_results.json"))
    assert answers_logged(out) == 4  # the first batch is kept for a resumed run


@pytest.mark.slow
def test_model_failing_mid_run_on_a_bad_sample_exits_2_with_one_line(tmp_path):
    out = tmp_path / "out"
    patch = FAIL_ON_SECOND_BATCH.format(error='vlreft.BadSampleError("task cvbench_mini, doc 5: unreadable")')
    proc = lmms_eval(tmp_path, *RUN, "--model_args", "pretrained=nanollava-tiny", "--output_path", str(out),
                     patch=patch)
    assert_expected_failure(proc, "task cvbench_mini, doc 5: unreadable")
    assert not list(out.rglob("*_results.json"))
    assert answers_logged(out) == 4


# --- per-sample failures travel with the run, into its own results file ----------------------------------------

TINY_CONTEXT = """
real_init = vlreft.VLReft.__init__
def tiny_context(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    self.context_length = 100  # cvbench_mini prompts (with the image's tokens) are longer: none fits
vlreft.VLReft.__init__ = tiny_context
"""


@pytest.mark.slow
def test_per_sample_failures_reach_this_runs_results_file_and_survive_a_resume(tmp_path):
    out = tmp_path / "out"
    args = [*RUN, "--model_args", "pretrained=nanollava-tiny", "--output_path", str(out)]
    first = lmms_eval(tmp_path, *args, patch=TINY_CONTEXT)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    [first_file] = list(out.glob("nanollava-tiny/*_results.json"))
    before = first_file.read_bytes()
    failures = json.loads(before)["vlm_peft_bench"]["failures"]
    assert [(f["task"], f["doc_id"]) for f in failures] == [("cvbench_mini", i) for i in range(8)]
    assert all("does not fit the model's context of 100 tokens" in f["failure"] for f in failures)

    second = lmms_eval(tmp_path, *args, patch=TINY_CONTEXT)  # every answer is read back from the answer log
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "resuming: 8 of 8 generation answers read" in second.stdout + second.stderr
    [second_file] = [p for p in out.glob("nanollava-tiny/*_results.json") if p != first_file]
    assert json.loads(second_file.read_text())["vlm_peft_bench"]["failures"] == failures
    assert first_file.read_bytes() == before  # an earlier run's results file is left alone


def test_a_results_file_lmms_eval_did_not_write_is_an_error(tmp_path):
    from vlm_peft_bench.lmms.cli import EvaluationError, results_file

    results = {"model_name_sanitized": "nanollava-tiny", "date": "20260101_120000"}
    with pytest.raises(EvaluationError, match="did not write its results file .*20260101_120000_results.json"):
        results_file(tmp_path, results)
    (tmp_path / "nanollava-tiny").mkdir()
    (tmp_path / "nanollava-tiny" / "20260101_120000_results.json").write_text("{}")
    assert results_file(tmp_path, results) == tmp_path / "nanollava-tiny" / "20260101_120000_results.json"
