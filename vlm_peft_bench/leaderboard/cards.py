"""The zoo's adapter cards (`adapters_zoo/<id>.yaml`), indexed by the hash over the adapter's files."""

from __future__ import annotations

from pathlib import Path

import yaml

from vlm_peft_bench.leaderboard import LeaderboardError
from vlm_peft_bench.leaderboard.results import display_path


def load_cards(zoo: Path | None) -> dict[str, dict]:
    """{adapter_hash: card} for every card in the zoo folder (cards without a hash are skipped)."""
    if zoo is None:
        return {}
    zoo = Path(zoo)
    if not zoo.is_dir():
        raise LeaderboardError(f"zoo folder {zoo} does not exist")
    cards: dict[str, dict] = {}
    for path in sorted(zoo.glob("*.yaml")):
        card = yaml.safe_load(path.read_text()) or {}
        digest = card.get("adapter_hash") if isinstance(card, dict) else None
        if not digest:
            continue
        if digest in cards:
            raise LeaderboardError(f"cards {cards[digest]['_file']} and {path.name} describe the same adapter files")
        card["_file"] = display_path(path)
        cards[digest] = card
    return cards


def base_totals(cards: dict[str, dict]) -> dict[str, int]:
    """{base hash: total parameters} as the cards record them (saves building the base to count it)."""
    return {c["base"]["hash"]: int(c["params"]["total"]) for c in cards.values()
            if c.get("base", {}).get("hash") and c.get("params", {}).get("total")}
