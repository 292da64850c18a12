"""Small modules: no `.py` file in the package or the benchmarks exceeds MAX_LINES lines (issue 12)."""

from pathlib import Path

from .conftest import REPO

MAX_LINES = 400
FOLDERS = ("vlm_peft_bench", "benchmarks")


def oversized(root: Path, folders: tuple[str, ...], limit: int = MAX_LINES) -> list[str]:
    """'path (N lines)' for each `.py` file under root/folder longer than `limit` lines."""
    out = []
    for path in sorted(p for folder in folders for p in (root / folder).rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{path.relative_to(root).as_posix()} ({n} lines)")
    return out


def test_oversized_names_each_offender(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "ok.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "pkg" / "notes.txt").write_text("x\n" * 1000)
    assert oversized(tmp_path, ("pkg",)) == [f"pkg/sub/long.py ({MAX_LINES + 1} lines)"]


def test_no_python_file_exceeds_the_limit():
    assert len(list((REPO / "vlm_peft_bench").rglob("*.py"))) > 10, f"no package sources found under {REPO}"
    too_long = oversized(REPO, FOLDERS)
    assert not too_long, f"over {MAX_LINES} lines: " + ", ".join(too_long)
