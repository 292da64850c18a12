"""`vlm-peft-bench`: the project's own commands (parameter accounting, adapter inspection, training, the
leaderboard, repr-rank, SPICE's jars, the task folder for plain lmms-eval).

Every `--json` command prints one JSON document and nothing else on stdout: while it runs, stdout is sent to
stderr (library notices, progress), and only the document is written to the real stdout (`_emit`).

An expected failure (bad input, an unusable adapter, model or results file, an output folder in the way) prints
`vlm-peft-bench <command>: <reason>` on stderr and exits with status 2; any other error keeps its traceback.

This module is the top of the import layers (docs/design.md, "Layers"): it wires every command to its layer. Each
command imports its layer when it runs, so that `--version`, `--help` and `tasks-path` never import torch (and
`leaderboard build` never imports a model).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from vlm_peft_bench import __version__
from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.paths import reported_rows, tasks_dir, zoo_dir
from vlm_peft_bench.quiet import stdout_to_stderr


def _emit(args: argparse.Namespace, json_text: str, text: str) -> None:
    """The command's result: `json_text` on the real stdout with --json, else `text` on stdout."""
    if getattr(args, "json", False):
        args.real_stdout.write(json_text + "\n")
        args.real_stdout.flush()
    else:
        print(text)


def _params(args: argparse.Namespace) -> int:
    from vlm_peft_bench.methods.params import account, dumps, format_report
    from vlm_peft_bench.methods.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    report = account(args.base, recipe=recipe, adapter=args.adapter)
    _emit(args, dumps(report), format_report(report))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from vlm_peft_bench.methods.inspect import format_inspection, inspect_adapter

    report = inspect_adapter(args.adapter, base=args.base)
    _emit(args, json.dumps(report, indent=2), format_inspection(report))
    return 0


def _tasks_path(args: argparse.Namespace) -> int:
    try:
        print(tasks_dir())
    except FileNotFoundError as err:
        print(f"vlm-peft-bench tasks-path: {err}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    from vlm_peft_bench.train.trainer import train

    layers = args.layers
    if layers and layers not in ("all",) and not layers.startswith("last:"):
        layers = [int(x) for x in layers.split(",")]
    overrides = {"rank": args.rank, "layers": layers, "positions": args.positions, "lr": args.lr,
                 "epochs": args.epochs, "intervene_on": args.intervene_on, "where": args.where}
    out = Path(args.out) if args.out else None
    card = train(args.recipe, args.task, out or zoo_dir() / "weights" / "pending", base=args.base, seed=args.seed,
                 overrides=overrides, limit=args.limit, device=args.device, evaluate_test=not args.no_test,
                 card_dir=None if args.no_card else "zoo", name_out=out is None)
    if not card:  # not the main process of a multi-process run
        return 0
    print(f"{card['id']}: validation {card['validation']}")
    if "test" in card:
        print(f"test {card['test']['metric']} {card['test']['value']} (95% CI {card['test']['ci95']}); "
              f"base {card['base_test']['value']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from vlm_peft_bench.adapters.accounting import base_config
    from vlm_peft_bench.train.sweep import parse_values, run_sweep

    axis, text = ("rank", args.rank) if args.rank else ("lowest_layer", args.lowest_layer)
    values = parse_values(text, axis, base_config(args.base).text_config.num_hidden_layers)
    path = run_sweep(args.recipe, args.task, axis, values, Path(args.out), base=args.base, seed=args.seed,
                     device=args.device, limit=args.limit, log=lambda text: print(text, file=sys.stderr))
    doc = json.loads(path.read_text(encoding="utf-8"))
    for point in doc["points"]:
        print(f"{axis} {point['value']}: train {point['train']}, held-out {point['held_out']}, test "
              f"{point['test']['value']} (95% CI {point['test']['ci95']})")
    print(f"wrote {path}; `leaderboard build` plots it when --results includes {Path(args.out)}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from vlm_peft_bench.train.cards import derived_card, evaluate_card, write_card

    card = derived_card(Path(args.adapter), args.task, args.base, args.seed, args.id)
    evaluations = evaluate_card(card, args.task, args.base, Path(args.adapter), args.seed)
    path = write_card(card, Path(args.zoo) if args.zoo else zoo_dir(), evaluations)
    print(f"{path}: {card['method']}, test {card['test']['metric']} {card['test']['value']} "
          f"(95% CI {card['test']['ci95']}); base {card['base_test']['value']}")
    return 0


def _leaderboard_build(args: argparse.Namespace) -> int:
    from vlm_peft_bench.leaderboard.build import build

    reported = reported_rows() if args.reported == "bundled" else Path(args.reported) if args.reported else None
    doc = build([Path(p) for p in args.results], Path(args.out), zoo=Path(args.zoo) if args.zoo else None,
                reported=reported, strict=args.strict, skip_bad=args.skip_bad)
    skipped = doc["inputs"].get("skipped", [])
    for entry in skipped:
        print(f"warning: skipped {entry['file']}: {entry['problem']}", file=sys.stderr)
    warned = {f"skipped {entry['file']} (--skip-bad): {entry['problem']}" for entry in skipped}
    measured = sum(r["kind"] == "measured" for r in doc["rows"])
    print(f"{measured} measured and {len(doc['rows']) - measured} reported rows in {len(doc['groups'])} groups "
          f"-> {args.out}")
    for note in doc["notes"]:
        if note not in warned:
            print(f"note: {note}")
    return 0


def _repr_rank(args: argparse.Namespace) -> int:
    from vlm_peft_bench.measure.repr_rank import default_name, repr_rank, write

    document = repr_rank(args.base, args.task, adapter=args.adapter, limit=args.limit, positions=args.positions,
                         device=args.device, batch_size=args.batch_size)
    path = write(document, args.out or default_name(document))
    print(f"effective rank {document['effective_rank']} of {document['hidden_size']} "
          f"(ratio {document['effective_rank_ratio']:.4f}) over {document['n']} items -> {path}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    from vlm_peft_bench.steering import icv, shift

    device = args.device or ("cuda" if _cuda() else "cpu")
    if args.steer_command == "icv":
        folder = icv.derive_icv(args.base, args.task, args.out, k=args.k, lam=args.lam, layers=args.layers,
                                seed=args.seed, batch_size=args.batch_size, device=device)
        print(f"in-context vector -> {folder} (evaluate: lmms_eval --model vlreft --model_args "
              f"pretrained={args.base},adapter={folder} --tasks ...)")
        return 0
    common = dict(layers=args.layers, positions=args.positions, alpha=args.alpha, batch_size=args.batch_size,
                  device=device, intervene_on=args.intervene_on)
    if args.steer_command == "shift":
        folder = shift.derive_shift(args.base, args.adapter, args.task, args.out, limit=args.limit, **common)
    else:
        folder = shift.derive_contrast(args.base, args.positive, args.negative, args.out, **common)
    print(f"{args.steer_command} vectors -> {folder} (evaluate: lmms_eval --model vlreft --model_args "
          f"pretrained={args.base},adapter={folder} --tasks ...)")
    return 0


def _combine(args: argparse.Namespace) -> int:
    from vlm_peft_bench.arithmetic import combine, parse_weights

    folder = combine(args.adapters, parse_weights(args.weights, len(args.adapters)), args.out, base=args.base)
    print(f"combined {len(args.adapters)} adapters -> {folder}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _spice_setup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vlm_peft_bench.scoring.spice_jars import setup

    def progress(artifact):
        bar = tqdm(desc=artifact.file_name, unit="B", unit_scale=True, file=sys.stderr)

        def update(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)
        update.close = bar.close
        return update

    report = setup(Path(args.dir) if args.dir else None, method=args.method, write_config=not args.no_config,
                   log=lambda text: print(text, file=sys.stderr), progress_factory=progress)
    if report.fetched:
        print(f"fetched {len(report.fetched)} jars ({report.method}) into {report.folder}; "
              f"{len(report.present)} were there already")
    else:
        print(f"all {len(report.present)} jars are in {report.folder} and match their checksums: nothing fetched")
    if report.config:
        print(f"recorded corenlp_dir: {report.folder} in {report.config}")
    else:
        print(f"config file left alone: set VLM_PEFT_BENCH_CORENLP={report.folder} for SPICE to find them")
    return 0


def _spice_status(args: argparse.Namespace) -> int:
    from vlm_peft_bench.scoring.spice import format_report, spice_report

    report = spice_report()
    _emit(args, json.dumps(report, indent=2), format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-peft-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tp = sub.add_parser("tasks-path", help="print our lmms-eval task folder, for plain lmms-eval's --include_path")
    tp.set_defaults(func=_tasks_path)
    p = sub.add_parser("params", help="count total and trainable parameters (no weights are loaded)")
    p.add_argument("--base", default="nanollava",
                   help="nanollava (published architecture), nanollava-tiny, or a model folder")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--recipe", help="a recipe name from adapters_zoo/recipes or a recipe YAML path")
    source.add_argument("--adapter", help="a saved adapter folder (counted from its files)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_params)

    i = sub.add_parser("inspect", help="what an adapter folder or Hub id is, and whether vlreft loads it (no weights "
                                       "loaded, nothing run)")
    i.add_argument("adapter", help="adapter folder or Hub id")
    i.add_argument("--base", help="a base to check it against besides nanollava: nanollava-tiny or a model folder")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_inspect)

    t = sub.add_parser("train", help="train a recipe on a task's training split and write an adapter card")
    t.add_argument("--recipe", required=True, help="recipe name (adapters_zoo/recipes) or YAML path")
    t.add_argument("--task", required=True, help="task with a training split, e.g. cvbench_mini")
    t.add_argument("--base", default="nanollava-tiny")
    t.add_argument("--out", help="adapter folder (default adapters_zoo/weights/<card id>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--rank", type=int, help="override the rank (ReFT rank or LoRA r): the rank sweep")
    t.add_argument("--layers", help="override ReFT layers: all, last:K (the layer sweep) or 0,5,11")
    t.add_argument("--positions", help="override ReFT positions, e.g. f5+l5")
    t.add_argument("--intervene-on", choices=["prompt", "all"],
                   help="ReFT: intervene on the prompt only (pyreft's default) or on the answer's tokens too")
    t.add_argument("--where", metavar="FIELD=VALUE",
                   help="train on the training items whose field reads VALUE only, e.g. type=2D (card id -type2D)")
    t.add_argument("--lr", type=float)
    t.add_argument("--epochs", type=int)
    t.add_argument("--limit", type=int, help="train on the first N items only (smoke runs)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--no-test", action="store_true", help="skip the lmms-eval test-split evaluation")
    t.add_argument("--no-card", action="store_true", help="do not write a card into adapters_zoo/")
    t.set_defaults(func=_train)

    sw = sub.add_parser("sweep", help="the VL-ReFT report's sweeps: train and score a recipe at each rank, or "
                                      "at each lowest intervened layer (layers L..last)")
    sw.add_argument("--recipe", default="reft-r4-all", help="recipe name or YAML path (default reft-r4-all)")
    sw.add_argument("--task", default="cvbench_mini", help="a task with a training split")
    axis = sw.add_mutually_exclusive_group(required=True)
    axis.add_argument("--rank", help="ranks, e.g. 1,2,4,6,8,10,14")
    axis.add_argument("--lowest-layer", help="lowest layers L, e.g. 0,1,2,3, or all (every layer of the base)")
    sw.add_argument("--base", default="nanollava-tiny")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--out", default="leaderboard/results/sweeps",
                    help="where the sweep file and each point's weights go (default leaderboard/results/sweeps)")
    sw.add_argument("--limit", type=int, help="train on the first N items only (smoke runs)")
    sw.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sw.set_defaults(func=_sweep)

    cd = sub.add_parser("card", help="evaluate an adapter that `train` did not make (a steering vector, a "
                                      "combination, a third party's) and write its zoo card and answers")
    cd.add_argument("adapter", help="the adapter folder (inside the zoo's weights/ for a zoo row)")
    cd.add_argument("--task", required=True, help="the task whose test split scores it, e.g. cvbench_mini")
    cd.add_argument("--base", default="nanollava-tiny")
    cd.add_argument("--seed", type=int, default=0)
    cd.add_argument("--id", help="the card id (default: the folder's name)")
    cd.add_argument("--zoo", help="the cards folder (default: adapters_zoo/)")
    cd.set_defaults(func=_card)

    lb = sub.add_parser("leaderboard", help="the leaderboard: accuracy against trainable-parameter fraction")
    lb_sub = lb.add_subparsers(dest="leaderboard_command", required=True)
    b = lb_sub.add_parser("build", help="build leaderboard.json/.csv/.md, plots and index.html from results",
                          description="Reads lmms-eval results (and sample logs), adapter cards, reported rows "
                                      "and repr-rank files; the same inputs give byte-identical outputs.")
    b.add_argument("--results", nargs="+", required=True, help="folders (searched recursively) or results files")
    b.add_argument("--zoo", help="adapter cards folder, e.g. adapters_zoo (matched by adapter hash)")
    b.add_argument("--reported", help="YAML of published numbers, e.g. leaderboard/reported.yaml; `bundled`: the "
                                      "rows shipped with the package (the same file)")
    b.add_argument("--out", required=True, help="output folder, e.g. leaderboard/")
    b.add_argument("--strict", action="store_true",
                   help="refuse incomparable results instead of keeping them in separate groups")
    b.add_argument("--skip-bad", action="store_true",
                   help="leave out results files, sample logs, cards and repr-rank files that cannot be used "
                        "(truncated, not JSON/YAML, another layout) instead of refusing; each is warned about and "
                        "named in leaderboard.json (inputs.skipped)")
    b.set_defaults(func=_leaderboard_build)

    sp = sub.add_parser("spice", help="SPICE's jars: fetch them (setup) and see what SPICE would use (status)")
    sp_sub = sp.add_subparsers(dest="spice_command", required=True)
    ss = sp_sub.add_parser("setup", help="fetch Stanford CoreNLP 3.6.0 and Nashorn from Maven Central, checked "
                                         "against their checksums, and record the folder for SPICE",
                           description="Puts the two CoreNLP 3.6.0 jars and the Nashorn JavaScript engine (with asm) "
                                       "into a folder of yours, each checked against Maven Central's SHA-1, and "
                                       "writes corenlp_dir into the config file. Jars already there and valid are "
                                       "kept; nothing is fetched then.")
    ss.add_argument("--dir", help="where the jars go (default: the platform's user data folder, "
                                  "~/.local/share/vlm-peft-bench/corenlp on Linux)")
    ss.add_argument("--method", default="auto", choices=["auto", "mvn", "https"],
                    help="auto: `mvn dependency:copy` when mvn is on PATH (reuses Maven's cache), else HTTPS")
    ss.add_argument("--no-config", action="store_true", help="do not write corenlp_dir into the config file")
    ss.set_defaults(func=_spice_setup)
    st = sp_sub.add_parser("status", help="what SPICE would use here and why (`available` in the JSON)")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    st.set_defaults(func=_spice_status)

    sv = sub.add_parser("steer", help="derive steering vectors from hidden states (no training): shift, contrast, "
                                      "icv")
    sv_sub = sv.add_subparsers(dest="steer_command", required=True)
    shift = sv_sub.add_parser("shift", help="the mean hidden-state shift an adapter causes on a task's training "
                                            "prompts, as additive vectors for the base")
    shift.add_argument("--adapter", required=True, help="the fine-tuned adapter whose shift to take")
    shift.add_argument("--task", required=True, help="a task with a training split, e.g. cvbench_mini")
    shift.add_argument("--limit", type=int, help="the first N training items only")
    contrast = sv_sub.add_parser("contrast", help="the mean hidden-state difference between two sets of prompts")
    contrast.add_argument("--positive", required=True, help="JSON Lines of {\"text\": ..., \"image\": optional "
                                                            "path relative to the file}: the direction to add")
    contrast.add_argument("--negative", required=True, help="the same, for the direction to subtract")
    icv = sv_sub.add_parser("icv", help="an in-context vector from K demonstrations of a task (Liu et al. 2023)")
    icv.add_argument("--task", required=True, help="a task with a training split, e.g. cvbench_mini")
    icv.add_argument("--k", type=int, default=16, help="demonstrations, a seeded sample of the training split")
    icv.add_argument("--lambda", dest="lam", type=float, default=0.1,
                     help="strength (recorded; vlreft alpha= overrides)")
    icv.add_argument("--seed", type=int, default=0)
    for command in (shift, contrast, icv):
        command.add_argument("--base", default="nanollava-tiny")
        command.add_argument("--out", required=True, help="the folder to write (vlreft loads it as adapter=)")
        command.add_argument("--layers", default="all", help="all, last:K or 0,2,3")
        command.add_argument("--batch-size", type=int, default=8)
        command.add_argument("--device", help="cpu or cuda (default: cuda when available)")
        command.set_defaults(func=_steer)
    for command in (shift, contrast):
        command.add_argument("--positions", default="all",
                             help="prompt positions the states are read at and the vectors added at: all, or "
                                  "pyreft's notation (l3, f2+l2)")
        command.add_argument("--alpha", type=float, default=1.0, help="strength (recorded; vlreft alpha= overrides)")
        command.add_argument("--intervene-on", default="prompt", choices=["prompt", "all"],
                             help="add the vectors to generated tokens too (all)")

    cb = sub.add_parser("combine", help="adapter arithmetic: a weighted sum of LoRA adapters' updates (peft's "
                                        "add_weighted_adapter, cat), written as a new adapter folder")
    cb.add_argument("adapters", nargs="+", help="two or more LoRA adapter folders of one base")
    cb.add_argument("--weights", required=True, help="one weight per adapter, e.g. 0.5,0.5 (negative subtracts)")
    cb.add_argument("--out", required=True, help="the folder to write (a peft folder + combination.json)")
    cb.add_argument("--base", default="nanollava-tiny", help="the base the adapters belong to")
    cb.set_defaults(func=_combine)

    r = sub.add_parser("repr-rank", help="singular-value spectrum and effective rank ratio of final-layer "
                                         "representations on a task's test items (PT-PEFT)")
    r.add_argument("--base", default="nanollava-tiny")
    r.add_argument("--adapter", help="adapter folder (any format `vlreft` accepts); omit for the bare base")
    r.add_argument("--task", required=True, help="e.g. cvbench_mini")
    r.add_argument("--limit", type=int, help="the first N test items only")
    r.add_argument("--positions", default="last", choices=["last", "mean"],
                   help="last prompt token (default) or the mean over prompt tokens")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    r.add_argument("--out", help="output JSON file or folder (default: repr_rank__<base>__<adapter>__<task>.json)")
    r.set_defaults(func=_repr_rank)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)  # --version and --help end here, before anything heavy is imported
    args.real_stdout = sys.stdout
    quiet = stdout_to_stderr() if getattr(args, "json", False) else contextlib.nullcontext()
    try:
        with quiet:
            code = args.func(args)
    except VlmPeftBenchError as err:  # an expected failure: its message, no traceback, status 2
        command = " ".join(filter(None, (args.command, getattr(args, "leaderboard_command", None),
                                         getattr(args, "spice_command", None), getattr(args, "steer_command", None))))
        print(f"vlm-peft-bench {command}: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
