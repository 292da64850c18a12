"""`vlm-peft-bench leaderboard build`: read results, cards, reported rows and repr-rank files; write every output.

Outputs (in --out): leaderboard.json (+ schema.json), leaderboard.csv, leaderboard.md, leaderboard.png/.svg,
repr_rank.png/.svg, index.html. Nothing depends on the clock, the machine or the order files are listed in:
the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.leaderboard import LeaderboardError, page, plots, tables
from vlm_peft_bench.leaderboard.cards import load_cards
from vlm_peft_bench.leaderboard.compare import group_results
from vlm_peft_bench.leaderboard.document import SCHEMA, build_document
from vlm_peft_bench.leaderboard.reported import load_reported
from vlm_peft_bench.leaderboard.repr_rank import read_repr_files
from vlm_peft_bench.leaderboard.results import display_path, find_results, read_results
from vlm_peft_bench.leaderboard.tasks import spec_for

OUTPUTS = ("leaderboard.json", "schema.json", "leaderboard.csv", "leaderboard.md", "leaderboard.png",
           "leaderboard.svg", "repr_rank.png", "repr_rank.svg", "index.html")


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def command_line(results: list[Path], zoo: Path | None, reported: Path | None, out: Path, strict: bool) -> str:
    parts = ["vlm-peft-bench leaderboard build", "--results", *[display_path(Path(p)) for p in results]]
    if zoo is not None:
        parts += ["--zoo", display_path(Path(zoo))]
    if reported is not None:
        parts += ["--reported", display_path(Path(reported))]
    parts += ["--out", display_path(Path(out))] + (["--strict"] if strict else [])
    return " ".join(parts)


def collect(results_dirs: list[Path], zoo: Path | None = None, reported: Path | None = None,
            strict: bool = False, command: str = "") -> dict:
    """The leaderboard document from the inputs (nothing written)."""
    results, notes = [], []
    files = find_results(results_dirs)
    for path in files:
        for result in read_results(path):
            if spec_for(result.task) is None:
                notes.append(f"{result.file}: task {result.task} skipped (no headline metric known; add it to "
                             "vlm_peft_bench/leaderboard/tasks.py)")
                continue
            results.append(result)
    sources = load_reported(reported)
    if not results and not sources:
        raise LeaderboardError("no results: no lmms-eval *_results.json under "
                               + ", ".join(str(d) for d in results_dirs) + " and no reported rows")
    boards, separations = group_results(results, strict)
    cards = load_cards(zoo)
    repr_docs = read_repr_files(results_dirs)
    inputs = {"results": sorted({r.file for r in results}),
              "samples": sorted({r.samples_file for r in results if r.samples_file}),
              "zoo": display_path(Path(zoo)) if zoo is not None else None,
              "cards": sorted(c["_file"] for c in cards.values()),
              "reported": display_path(Path(reported)) if reported is not None else None,
              "repr_rank": sorted(d["_file"] for d in repr_docs)}
    return build_document(boards, cards, sources, repr_docs, separations + notes, inputs, command)


def render_outputs(doc: dict) -> dict[str, bytes]:
    png, svg = plots.scatter_figure(doc)
    repr_png, repr_svg = plots.repr_figure(doc)
    return {
        "leaderboard.json": dumps(doc).encode(),
        "schema.json": dumps(SCHEMA).encode(),
        "leaderboard.csv": tables.to_csv(doc).encode(),
        "leaderboard.md": tables.to_markdown(doc).encode(),
        "leaderboard.png": png, "leaderboard.svg": svg,
        "repr_rank.png": repr_png, "repr_rank.svg": repr_svg,
        "index.html": page.render(doc).encode(),
    }


def build(results_dirs: list[Path], out: Path, zoo: Path | None = None, reported: Path | None = None,
          strict: bool = False) -> dict:
    """Build and write every output into `out`; returns the document."""
    command = command_line(results_dirs, zoo, reported, out, strict)
    doc = collect(results_dirs, zoo, reported, strict, command)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in render_outputs(doc).items():
        (out / name).write_bytes(content)
    return doc
