"""The wheel is self-contained: built from a copy of the source, installed into a temporary folder outside the
repository, and run from an unrelated folder, it evaluates, counts, trains, prints its task folder and version, and
builds a leaderboard page, with every file it needs taken from the installed package (no network, no checkout)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_peft_bench import __version__

from .conftest import REPO

# What the build reads from the repository's top level; nothing else is copied (virtual environments beside the
# checkout, such as CI's .venv-pinned, are gigabytes).
BUILD_INPUTS = {"pyproject.toml", "README.md", "LICENSE", "vlm_peft_bench", "tasks", "adapters_zoo", "leaderboard"}
SKIP = {"build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    if Path(folder) == REPO:
        return {n for n in names if n not in BUILD_INPUTS}
    return {n for n in names if n.endswith(".egg-info") or n in SKIP}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of the source (no stale build/), installed with --target."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = list((root / "dist").glob("vlm_peft_bench-*.whl"))
    assert wheel.name.startswith(f"vlm_peft_bench-{__version__}-")
    installed = subprocess.run([*pip, "install", "--no-deps", "--target", str(root / "site"), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root / "site"


def run(site: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("VLM_PEFT_BENCH_TASKS", None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_wheel_contents(site):
    package = site / "vlm_peft_bench"
    for name in ("_bundled/tasks/cvbench/cvbench_mini.yaml", "_bundled/tasks/cvbench/utils.py",
                 "_bundled/tasks/cvbench/mini/test.parquet", "_bundled/tasks/cvbench/mini/train.parquet",
                 "_bundled/tasks/coco_captions/mini/test.parquet", "_bundled/tasks/vqa_v2/_vqa_v2_template_yaml",
                 "_bundled/adapters_zoo/recipes/reft-r4-all.yaml", "_bundled/leaderboard/reported.yaml",
                 "leaderboard/web/page.js", "assets/nanollava-tiny/model.safetensors"):
        assert (package / name).is_file(), name
    assert not (package / "_bundled/adapters_zoo/weights").exists()  # the zoo's weights do not ship
    assert not (site / "tasks").exists()  # nothing outside the package
    assert not (site / "vlm_peft_bench_build").exists()  # the build scripts run from a checkout only
    source_packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "vlm_peft_bench").rglob("__init__.py")}
    assert all((site / p / "__init__.py").is_file() for p in source_packages), "a package missing from pyproject"


@pytest.mark.slow
def test_installed_wheel_runs_from_anywhere(site, tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    before = {p for p in site.rglob("*") if "__pycache__" not in p.parts}

    where = run(site, cwd, "-c", "import vlm_peft_bench; print(vlm_peft_bench.__file__)").stdout.strip()
    assert Path(where).is_relative_to(site), f"imported from {where}, not the installed wheel"

    version = run(site, cwd, "-m", "vlm_peft_bench.cli", "--version").stdout.strip()
    assert version == f"vlm-peft-bench {__version__}"
    tasks = Path(run(site, cwd, "-m", "vlm_peft_bench.cli", "tasks-path").stdout.strip())
    assert tasks.is_dir() and tasks.is_relative_to(site) and (tasks / "cvbench" / "cvbench_mini.yaml").is_file()

    out = tmp_path / "results"
    run(site, cwd, "-m", "vlm_peft_bench.lmms.cli", "--model", "vlreft", "--model_args", "pretrained=nanollava-tiny",
        "--tasks", "cvbench_mini", "--batch_size", "8", "--limit", "16", "--output_path", str(out))
    [results] = list(out.glob("nanollava-tiny/*_results.json"))
    data = json.loads(results.read_text())
    scores = data["results"]["cvbench_mini"]
    combined = scores["cvbench_combined,none"]  # NaN here: the first 16 items are all 2D (no 3D half to average)
    assert math.isnan(combined) or 0.0 <= combined <= 1.0
    assert 0.0 <= scores["cvbench_2d,none"] <= 1.0 and 0.0 <= scores["accuracy,none"] <= 1.0
    assert data["vlm_peft_bench"]["versions"]

    params = json.loads(run(site, cwd, "-m", "vlm_peft_bench.cli", "params", "--recipe", "lora-r8", "--json").stdout)
    assert params["recipe"] == "lora-r8" and params["trainable"] == 1_744_896

    adapter = tmp_path / "adapter"
    run(site, cwd, "-m", "vlm_peft_bench.cli", "train", "--recipe", "reft-r4-all", "--task", "cvbench_mini",
        "--limit", "4", "--epochs", "1", "--no-test", "--device", "cpu", "--out", str(adapter))
    assert (adapter / "config.json").is_file() and list(adapter.glob("intkey_*.bin"))
    [card] = list((cwd / "adapters_zoo").glob("*.yaml"))  # installed: cards go to ./adapters_zoo, not the package
    assert card.name.startswith("reft-r4-all")

    board = tmp_path / "board"
    run(site, cwd, "-m", "vlm_peft_bench.cli", "leaderboard", "build", "--results", str(out), "--reported", "bundled",
        "--out", str(board))
    assert (board / "index.html").is_file()
    assert any(r["kind"] == "reported" for r in json.loads((board / "leaderboard.json").read_text())["rows"])

    after = {p for p in site.rglob("*") if "__pycache__" not in p.parts}
    assert after == before, f"written into the installed package: {sorted(map(str, after - before))[:5]}"
