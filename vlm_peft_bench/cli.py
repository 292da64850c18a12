"""`vlm-peft-bench`: the project's own commands (parameter accounting; training and the leaderboard to come)."""

from __future__ import annotations

import argparse
import sys


def _params(args: argparse.Namespace) -> int:
    from vlm_peft_bench.adapters.accounting import account, dumps, format_report
    from vlm_peft_bench.adapters.recipes import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    report = account(args.base, recipe=recipe, adapter=args.adapter)
    print(dumps(report) if args.json else format_report(report))
    return 0


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vlm_peft_bench.train.trainer import ZOO, train

    layers = args.layers
    if layers and layers not in ("all",) and not layers.startswith("last:"):
        layers = [int(x) for x in layers.split(",")]
    overrides = {"rank": args.rank, "layers": layers, "positions": args.positions, "lr": args.lr,
                 "epochs": args.epochs}
    out = Path(args.out) if args.out else None
    card = train(args.recipe, args.task, out or ZOO / "weights" / "pending", base=args.base, seed=args.seed,
                 overrides=overrides, limit=args.limit, device=args.device, evaluate_test=not args.no_test,
                 card_dir=None if args.no_card else ZOO, name_out=out is None)
    if not card:  # not the main process of a multi-process run
        return 0
    print(f"{card['id']}: validation {card['validation']}")
    if "test" in card:
        print(f"test {card['test']['metric']} {card['test']['value']} (95% CI {card['test']['ci95']}); "
              f"base {card['base_test']['value']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-peft-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="count total and trainable parameters (no weights are loaded)")
    p.add_argument("--base", default="nanollava",
                   help="nanollava (published architecture), nanollava-tiny, or a model folder")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--recipe", help="a recipe name from adapters_zoo/recipes or a recipe YAML path")
    source.add_argument("--adapter", help="a saved adapter folder (counted from its files)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_params)

    t = sub.add_parser("train", help="train a recipe on a task's training split and write an adapter card")
    t.add_argument("--recipe", required=True, help="recipe name (adapters_zoo/recipes) or YAML path")
    t.add_argument("--task", required=True, help="task with a training split, e.g. cvbench_mini")
    t.add_argument("--base", default="nanollava-tiny")
    t.add_argument("--out", help="adapter folder (default adapters_zoo/weights/<card id>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--rank", type=int, help="override the rank (ReFT rank or LoRA r): the rank sweep")
    t.add_argument("--layers", help="override ReFT layers: all, last:K (the layer sweep) or 0,5,11")
    t.add_argument("--positions", help="override ReFT positions, e.g. f5+l5")
    t.add_argument("--lr", type=float)
    t.add_argument("--epochs", type=int)
    t.add_argument("--limit", type=int, help="train on the first N items only (smoke runs)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--no-test", action="store_true", help="skip the lmms-eval test-split evaluation")
    t.add_argument("--no-card", action="store_true", help="do not write a card into adapters_zoo/")
    t.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> None:
    from vlm_peft_bench.adapters.detect import AdapterError
    from vlm_peft_bench.nanollava.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except (AdapterError, CheckpointError) as err:
        sys.exit(f"vlm-peft-bench {args.command}: {err}")


if __name__ == "__main__":
    main()
