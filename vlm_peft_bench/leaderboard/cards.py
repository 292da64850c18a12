"""The zoo's adapter cards (`adapters_zoo/<id>.yaml`), indexed by the hash over the adapter's files.

Every `*.yaml` directly in the zoo folder is a card and must hold what the leaderboard reads: `id`, `method`,
`adapter_hash`, `params.trainable`, `params.total`, `params.fraction` (and, when present, `base.hash` and
`seed` of the right types). A card that is not valid YAML or lacks any of these is a `BadFile` naming the
card, the line (for YAML errors) and the fields; `load_cards` returns those problems alongside the good cards
so that the builder can list them all (or, with --skip-bad, leave the bad cards out).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vlm_peft_bench.leaderboard import LeaderboardError
from vlm_peft_bench.leaderboard.problems import BadFile, Problem
from vlm_peft_bench.leaderboard.readfile import kind_of, yaml_problem
from vlm_peft_bench.paths import display_path

FIX = "regenerate it with `vlm-peft-bench train` (or fix it by hand), or move it out of the zoo folder"


def _field_problems(card: dict) -> list[str]:
    problems = []

    def check(where: str, value, ok: bool, meaning: str) -> None:
        if value is None:
            problems.append(f"no {where}")
        elif not ok:
            problems.append(f"{where} is {kind_of(value)} {value!r}, expected {meaning}")

    for key in ("id", "method", "adapter_hash"):
        check(key, card.get(key), isinstance(card.get(key), str) and bool(card.get(key)), "a non-empty string")
    params = card.get("params")
    if not isinstance(params, dict):
        problems.append("no params (trainable, total, fraction)" if params is None
                        else f"params is {kind_of(params)}, expected a mapping")
        params = {}
    for key, meaning in (("trainable", "a whole number >= 0"), ("total", "a whole number > 0")):
        value = params.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (key == "total")
        check(f"params.{key}", value, ok, meaning)
    fraction = params.get("fraction")
    check("params.fraction", fraction, isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
          and 0 <= fraction <= 1, "a number in [0, 1]")
    base = card.get("base")
    if base is not None and not (isinstance(base, dict) and isinstance(base.get("hash"), (str, type(None)))):
        problems.append("base is not a mapping with a string hash")
    if card.get("seed") is not None and (not isinstance(card["seed"], int) or isinstance(card["seed"], bool)):
        problems.append(f"seed is {kind_of(card['seed'])}, expected a whole number")
    return problems


def read_card(path: Path) -> dict:
    """One card, checked; `BadFile` naming the card otherwise."""
    shown = display_path(path)
    try:
        card = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise BadFile(shown, yaml_problem(err), FIX) from err
    except (OSError, UnicodeDecodeError) as err:
        raise BadFile(shown, f"cannot be read ({getattr(err, 'strerror', None) or err})", FIX) from err
    if card is None:
        raise BadFile(shown, "empty: not an adapter card", FIX)
    if not isinstance(card, dict):
        raise BadFile(shown, f"holds {kind_of(card)}, not an adapter card (a mapping)", FIX)
    problems = _field_problems(card)
    if problems:
        raise BadFile(shown, "adapter card with " + "; ".join(problems), FIX)
    return {**card, "_file": shown}


def load_cards(zoo: Path | None) -> tuple[dict[str, dict], list[Problem]]:
    """({adapter_hash: card} for every good card in the zoo folder, [problem of every bad card])."""
    if zoo is None:
        return {}, []
    zoo = Path(zoo)
    if not zoo.is_dir():
        raise LeaderboardError(f"zoo folder {zoo} does not exist")
    cards: dict[str, dict] = {}
    problems = []
    for path in sorted(zoo.glob("*.yaml")):
        try:
            card = read_card(path)
        except BadFile as err:
            problems.append(err.problem)
            continue
        digest = card["adapter_hash"]
        if digest in cards:
            raise LeaderboardError(f"cards {cards[digest]['_file']} and {card['_file']} describe the same adapter "
                                   "files; keep one of them")
        cards[digest] = card
    return cards, problems


def base_totals(cards: dict[str, dict]) -> dict[str, int]:
    """{base hash: total parameters} as the cards record them (saves building the base to count it)."""
    return {c["base"]["hash"]: int(c["params"]["total"]) for c in cards.values()
            if (c.get("base") or {}).get("hash") and c.get("params", {}).get("total")}
