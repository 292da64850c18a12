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
