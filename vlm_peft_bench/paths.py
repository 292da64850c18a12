"""Where the package's run-time files are: the task folder lmms-eval reads, recipes, reported rows.

They live in the repository's top-level folders (`tasks/`, `adapters_zoo/recipes/`, `leaderboard/reported.yaml`).
Building the wheel copies them, under the same relative paths, into the package's `_bundled/` folder
(`[tool.setuptools]` in pyproject.toml maps each folder to a `vlm_peft_bench._bundled.*` package). So there is one
lookup, `bundled(relative path)`: the bundle root found through `importlib.resources` (the installed package's
`_bundled/`, or in a source checkout, editable install or not, the folder holding the package), then the same
relative path in both.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

BUNDLED = "_bundled"  # the package folder the wheel holds the bundled files in (pyproject.toml's package-dir)


def bundle_root() -> Path:
    """The folder the bundled relative paths start from: `<package>/_bundled` when installed from a wheel, the
    repository root in a source checkout. Always a real folder (the package is never imported from a zip)."""
    package = Path(str(importlib.resources.files("vlm_peft_bench")))
    installed = package / BUNDLED
    return installed if installed.is_dir() else package.parent


def checkout_root() -> Path | None:
    """The repository root when running from a source checkout; None when installed from a wheel."""
    root = bundle_root()
    return None if root.name == BUNDLED else root


def bundled(relative: str) -> Path:
    """A bundled file or folder (e.g. `tasks`, `adapters_zoo/recipes`); FileNotFoundError naming it if missing."""
    path = bundle_root() / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{relative} not found in {bundle_root()}: the vlm-peft-bench installation is incomplete; "
            "reinstall it (`pip install vlm-peft-bench` or `pip install -e .` in a checkout)"
        )
    return path


def tasks_dir() -> Path:
    """Our lmms-eval task folder (a real directory, for `--include_path`): $VLM_PEFT_BENCH_TASKS, else bundled."""
    override = os.environ.get("VLM_PEFT_BENCH_TASKS")
    path = Path(override) if override else bundled("tasks")
    if not (path / "cvbench").is_dir():
        raise FileNotFoundError(f"task folder {path} has no cvbench/ task: set VLM_PEFT_BENCH_TASKS to a "
                                "vlm-peft-bench tasks/ folder, or unset it")
    return path


def recipes_dir() -> Path:
    return bundled("adapters_zoo/recipes")


def reported_rows() -> Path:
    """The leaderboard's published rows (leaderboard/reported.yaml)."""
    return bundled("leaderboard/reported.yaml")


def project_root() -> Path:
    """Where project outputs go by default (the zoo's adapters and cards, regenerated task data) and what paths in
    cards and leaderboards are written relative to (no machine's own paths): the repository root in a checkout,
    the current folder when installed (the package folder is no place for outputs)."""
    return checkout_root() or Path.cwd()


def display_path(path: Path) -> str:
    """Paths inside the project root relative to it, so outputs (leaderboards, repr-rank files) do not name one
    machine; any other path as given."""
    root, resolved = project_root(), Path(path).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else Path(path).as_posix()


def zoo_dir() -> Path:
    """Where `train` writes adapters and cards by default: the checkout's adapters_zoo/, or ./adapters_zoo when
    installed (the zoo's weights and cards do not ship)."""
    return project_root() / "adapters_zoo"
