"""Where the package's files are: the task folder lmms-eval reads and the embedded assets."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def tasks_dir() -> Path:
    """Our lmms-eval task folder: $VLM_PEFT_BENCH_TASKS, else `tasks/` beside the package (source checkout)."""
    override = os.environ.get("VLM_PEFT_BENCH_TASKS")
    path = Path(override) if override else REPO_DIR / "tasks"
    if not (path / "cvbench").is_dir():
        raise FileNotFoundError(
            f"task folder {path} not found: install vlm-peft-bench from a source checkout (`pip install -e .`) "
            "or set VLM_PEFT_BENCH_TASKS to the repository's tasks/ folder"
        )
    return path
