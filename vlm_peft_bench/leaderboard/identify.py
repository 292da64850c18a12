"""What a row is: its method, adapter id and parameter counts, from the adapter's card when the zoo has one,
else counted from the adapter's files (`vlm_peft_bench.adapters.accounting`)."""

from __future__ import annotations

from pathlib import Path

from vlm_peft_bench.leaderboard.cards import base_totals


def _total(base: dict, cards: dict) -> int | None:
    totals = base_totals(cards)
    if base.get("hash") in totals:
        return totals[base["hash"]]
    try:
        from vlm_peft_bench.methods.params import account

        return int(account(base["name"])["total"])
    except Exception:  # an unreachable Hub id, a folder no longer there: the total stays unknown
        return None


def identify(base: dict, adapter: dict | None, cards: dict[str, dict]) -> dict:
    """{method, adapter_id, adapter_hash, card, params: {trainable, total, fraction, source}, training_seed, note}."""
    if adapter is None:
        total = _total(base, cards)
        return {"method": "base", "adapter_id": None, "adapter_hash": None, "card": None, "training_seed": None,
                "params": {"trainable": 0, "total": total, "fraction": 0.0 if total else None,
                           "source": "untrained base"}, "note": None}
    digest = adapter.get("sha256")
    card = cards.get(digest) if digest else None
    if card is not None:
        params = card["params"]
        return {"method": card["method"], "adapter_id": card["id"], "adapter_hash": digest,
                "card": card["_file"], "training_seed": card.get("seed"),
                "params": {"trainable": int(params["trainable"]), "total": int(params["total"]),
                           "fraction": float(params["fraction"]), "source": "card"}, "note": None}
    return _from_files(base, adapter, cards)


def _from_files(base: dict, adapter: dict, cards: dict) -> dict:
    from vlm_peft_bench.paths import project_root

    path = Path(adapter.get("path") or "")
    if not path.is_dir() and not path.is_absolute() and (project_root() / path).is_dir():
        path = project_root() / path  # a run made from the repository root, built from elsewhere
    unknown = {"method": "unknown", "adapter_id": path.name or None, "adapter_hash": adapter.get("sha256"),
               "card": None, "training_seed": None,
               "params": {"trainable": None, "total": None, "fraction": None, "source": None}}
    from vlm_peft_bench.adapters.detect import AdapterError
    from vlm_peft_bench.methods.attach import adapter_hash
    from vlm_peft_bench.methods.params import account
    from vlm_peft_bench.methods.table import method_name

    if not path.is_dir():
        return {**unknown, "note": f"no card matches the adapter's hash and its folder {path} is not here: "
                                   "parameters unknown"}
    if adapter.get("sha256") and adapter_hash(path) != adapter["sha256"]:
        return {**unknown, "note": f"no card matches the adapter's hash, and the files in {path} changed since "
                                   "the run: parameters unknown (re-run the evaluation)"}
    try:
        report = account(base["name"], adapter=str(path))
        method = method_name(path)
    except (AdapterError, OSError, ValueError) as err:
        return {**unknown, "note": f"cannot count the adapter's parameters: {err}"}
    return {"method": method, "adapter_id": path.name,
            "adapter_hash": adapter.get("sha256") or adapter_hash(path), "card": None, "training_seed": None,
            "params": {"trainable": int(report["trainable"]), "total": int(report["total"]),
                       "fraction": float(report["fraction"]), "source": "adapter files"},
            "note": "no card in the zoo: counted from the adapter's files"}
