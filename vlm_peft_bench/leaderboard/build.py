"""`vlm-peft-bench leaderboard build`: read results, cards, reported rows and repr-rank files; write every output.

Outputs (in --out): leaderboard.json (+ schema.json), leaderboard.csv, leaderboard.md, leaderboard.png/.svg,
repr_rank.png/.svg, sweeps.png/.svg (from `vlm-peft-bench sweep` files among the results), index.html. Nothing
depends on the clock, the machine or the order files are listed in: the same inputs give byte-identical files.

Bad inputs (problems.py): every input is read and checked before anything is rendered, and every file that
cannot be used is listed in one error; nothing is written then. With `skip_bad` (--skip-bad) bad results
files, sample logs, cards and repr-rank files are left out instead, each named in leaderboard.json
(`inputs.skipped`, present only then, and a note). Outputs are replaced all together or not at all
(atomic.py), so a failing build leaves the previous leaderboard as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.leaderboard import LeaderboardError, page, plots, tables
from vlm_peft_bench.leaderboard.cards import load_cards
from vlm_peft_bench.leaderboard.compare import group_results
from vlm_peft_bench.leaderboard.document import SCHEMA, build_document
from vlm_peft_bench.leaderboard.problems import BadFile, BadInputs, Problem, ordered
from vlm_peft_bench.leaderboard.reported import load_reported
from vlm_peft_bench.leaderboard.repr_rank import read_repr_files
from vlm_peft_bench.leaderboard.results import TaskResult, attach_samples, find_results, read_results
from vlm_peft_bench.leaderboard.sweeps import read_sweeps
from vlm_peft_bench.leaderboard.tasks import spec_for
from vlm_peft_bench.paths import display_path

NO_PROVENANCE = ("no vlm_peft_bench provenance block (plain lmms-eval, an older vlm-peft-bench, or a run stopped "
                 "before the block was written): base and adapter hashes unknown, so its rows are kept apart from "
                 "results that have them")

OUTPUTS = ("leaderboard.json", "schema.json", "leaderboard.csv", "leaderboard.md", "leaderboard.png",
           "leaderboard.svg", "repr_rank.png", "repr_rank.svg", "sweeps.png", "sweeps.svg", "index.html")


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def command_line(results: list[Path], zoo: Path | None, reported: Path | None, out: Path, strict: bool,
                 skip_bad: bool = False) -> str:
    parts = ["vlm-peft-bench leaderboard build", "--results", *[display_path(Path(p)) for p in results]]
    if zoo is not None:
        parts += ["--zoo", display_path(Path(zoo))]
    if reported is not None:
        parts += ["--reported", display_path(Path(reported))]
    parts += ["--out", display_path(Path(out))] + (["--strict"] if strict else []) + (
        ["--skip-bad"] if skip_bad else [])
    return " ".join(parts)


def read_measured(results_dirs: list[Path]) -> tuple[list[TaskResult], list[str], list[Problem]]:
    """(results of tasks the leaderboard knows, with their sample logs; notes; problems of bad files)."""
    results, notes, problems = [], [], []
    for path in find_results(results_dirs):
        try:
            file_results = read_results(path, with_samples=False)
        except BadFile as err:
            problems.append(err.problem)
            continue
        if file_results and not file_results[0].provenance:
            notes.append(f"{file_results[0].file}: {NO_PROVENANCE}")
        for result in file_results:
            if spec_for(result.task) is None:
                notes.append(f"{result.file}: task {result.task} skipped (no headline metric known; add it to "
                             "vlm_peft_bench/leaderboard/tasks.py)")
                continue
            attach_samples(result, path)
            if result.samples_problem is not None:
                problems.append(result.samples_problem)
            elif result.samples_note:
                notes.append(f"{result.samples_file}: {result.samples_note}: {result.task} of {result.file} keeps "
                             "its scores, without an interval; re-run that evaluation for one")
            results.append(result)
    return results, notes, problems


def settle(problems: list[Problem], results: list[TaskResult], skip_bad: bool) -> tuple[list[dict], list[str]]:
    """Raise `BadInputs` listing every problem, unless `skip_bad` and all can be left out; then drop the bad
    sample logs from their results (scores kept) and return (inputs.skipped records, notes)."""
    if not problems:
        return [], []
    if not skip_bad or not all(p.skippable for p in problems):
        raise BadInputs(problems)
    bad_logs = {p.file: p for p in problems}
    for result in results:
        problem = bad_logs.get(result.samples_file) if result.samples_problem else None
        if problem is not None:
            result.samples_file, result.samples_note = None, f"sample log left out ({problem.what})"
    left_out = ordered(problems)
    return [p.record() for p in left_out], [f"skipped {p.file} (--skip-bad): {p.what}" for p in left_out]


def collect(results_dirs: list[Path], zoo: Path | None = None, reported: Path | None = None,
            strict: bool = False, command: str = "", skip_bad: bool = False) -> dict:
    """The leaderboard document from the inputs (nothing written). Every input is read and checked first;
    `BadInputs` lists every bad file, unless `skip_bad` leaves them out (recorded in inputs.skipped)."""
    results, notes, problems = read_measured(results_dirs)
    try:
        sources = load_reported(reported)
    except BadFile as err:
        sources = []
        problems.append(err.problem)
    cards, card_problems = load_cards(zoo)
    repr_docs, repr_problems = read_repr_files(results_dirs)
    sweeps, sweep_problems = read_sweeps(results_dirs)
    skipped, skip_notes = settle(problems + card_problems + repr_problems + sweep_problems, results, skip_bad)
    if not results and not sources:
        left_out = f" ({len(skipped)} bad files left out)" if skipped else ""
        raise LeaderboardError("no results: no lmms-eval *_results.json under "
                               + ", ".join(str(d) for d in results_dirs) + " and no reported rows" + left_out)
    boards, separations = group_results(results, strict)
    inputs = {"results": sorted({r.file for r in results}),
              "samples": sorted({r.samples_file for r in results if r.samples_file}),
              "zoo": display_path(Path(zoo)) if zoo is not None else None,
              "cards": sorted(c["_file"] for c in cards.values()),
              "reported": display_path(Path(reported)) if reported is not None else None,
              "repr_rank": sorted(d["_file"] for d in repr_docs), "sweeps": [s["file"] for s in sweeps]}
    if skipped:
        inputs["skipped"] = skipped
    doc = build_document(boards, cards, sources, repr_docs, skip_notes + separations + notes, inputs, command)
    doc["sweeps"] = sweeps
    return doc


def render_outputs(doc: dict) -> dict[str, bytes]:
    png, svg = plots.scatter_figure(doc)
    repr_png, repr_svg = plots.repr_figure(doc)
    sweep_png, sweep_svg = plots.sweep_figure(doc)
    return {
        "leaderboard.json": dumps(doc).encode(),
        "schema.json": dumps(SCHEMA).encode(),
        "leaderboard.csv": tables.to_csv(doc).encode(),
        "leaderboard.md": tables.to_markdown(doc).encode(),
        "leaderboard.png": png, "leaderboard.svg": svg,
        "repr_rank.png": repr_png, "repr_rank.svg": repr_svg,
        "sweeps.png": sweep_png, "sweeps.svg": sweep_svg,
        "index.html": page.render(doc).encode(),
    }


def build(results_dirs: list[Path], out: Path, zoo: Path | None = None, reported: Path | None = None,
          strict: bool = False, skip_bad: bool = False) -> dict:
    """Build and write every output into `out`; returns the document. On any error nothing in `out` changes."""
    command = command_line(results_dirs, zoo, reported, out, strict, skip_bad)
    doc = collect(results_dirs, zoo, reported, strict, command, skip_bad)
    outputs = render_outputs(doc)
    try:
        write_files(Path(out), outputs)
    except OSError as err:
        raise LeaderboardError(f"cannot write the outputs into {out}: {err.strerror or err}; the previous outputs "
                               "there are unchanged") from err
    return doc
