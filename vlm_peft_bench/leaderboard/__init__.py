"""The leaderboard: accuracy against trainable-parameter fraction, from lmms-eval results and adapter cards.

`vlm-peft-bench leaderboard build` reads lmms-eval results files (with their sample logs where present), the
adapters zoo's cards, published numbers from a YAML file, `repr-rank` files and sweep files, and writes
leaderboard.json, .csv, .md, the plots and a self-contained index.html (which no module here opens: the page test
drives a browser with Playwright). Modules, one job each:

    tasks      which metric heads each task's column (one table entry per task family)
    readfile   one JSON file read, or exactly why not (truncated, empty, not JSON, not UTF-8)
    layout     the results-file layout and provenance version the reader accepts, checked field by field
    results    lmms-eval results files -> one record per (file, task)
    samples    sample logs: complete, incomplete (a killed run: scores kept, no interval) or bad (refused)
    problems   bad input files, all named in one error (or left out and recorded with --skip-bad)
    compare    what makes two results comparable; groups; refusal messages
    ci         bootstrap 95% intervals from per-sample logs
    cards      the zoo's adapter cards, by adapter hash
    identify   method, adapter id and parameter counts of a row (from the results' provenance or the card)
    reported   published rows from a YAML file
    pareto     the Pareto frontier (lower fraction, higher score)
    repr_rank  repr-rank documents (`vlm-peft-bench repr-rank`, vlm_peft_bench/measure/) read and checked
    sweeps     sweep files (`vlm-peft-bench sweep`, vlm_peft_bench/train/sweep.py) read and checked
    document   the leaderboard document (leaderboard.json) and its schema
    tables     leaderboard.csv and leaderboard.md
    plots      the scatter, repr-rank and sweep plots (PNG, SVG; byte-stable)
    page       index.html (inline CSS, JS and data)
    build      reads the inputs and writes every output

It only reads files, plus the method registry's plain table (`vlm_peft_bench.methods.table`: names, colours); it
never imports code that loads a model or an adapter (tests/test_import_layers.py checks this).
"""

from vlm_peft_bench.errors import VlmPeftBenchError

SCHEMA_ID = "vlm-peft-bench/leaderboard"
SCHEMA_VERSION = "1.0"


class LeaderboardError(VlmPeftBenchError, ValueError):
    """Inputs that cannot make one honest leaderboard (incomparable or duplicate results, bad files)."""
