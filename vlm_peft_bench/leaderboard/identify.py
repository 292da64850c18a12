"""What a row is: its method, adapter id and parameter counts. The counts come from the results file's provenance
block (our `lmms_eval` records the evaluated base's and adapter's counts there), else from the adapter's card in
the zoo, else they are unknown; the leaderboard counts nothing itself (it loads no model and no adapter)."""

from __future__ import annotations

from pathlib import Path

from vlm_peft_bench.leaderboard.cards import base_totals

RERUN = "re-run the evaluation with vlm-peft-bench's `lmms_eval`, which records them"


def recorded_counts(params: dict | None) -> dict | None:
    """{trainable, total, fraction, derived} from a provenance block's `params` ({"unknown": reason} or absent:
    None); `derived` (steering vectors' entries, computed rather than trained) is 0 when not recorded."""
    if not params or "unknown" in params:
        return None
    return {"trainable": int(params["trainable"]), "total": int(params["total"]),
            "fraction": float(params["fraction"]), "derived": int(params.get("derived") or 0)}


def plotted(params: dict) -> float | None:
    """Where a row sits on the fraction axis and in the Pareto comparison: (trainable + derived) / total, so that a
    steering vector (0 trained) is placed by the parameters it adds."""
    if params.get("total") in (None, 0) or params.get("trainable") is None:
        return params.get("fraction")
    return (params["trainable"] + (params.get("derived") or 0)) / params["total"]


def identify(base: dict, adapter: dict | None, cards: dict[str, dict], params: dict | None = None,
             method: str | None = None) -> dict:
    """{method, adapter_id, adapter_hash, card, params: {trainable, total, fraction, source}, training_seed, note}.
    `params` and `method` are what the results file's provenance block records (absent in older files)."""
    recorded = recorded_counts(params)
    if adapter is None:
        total = recorded["total"] if recorded else base_totals(cards).get(base.get("hash"))
        return {"method": "base", "adapter_id": None, "adapter_hash": None, "card": None, "training_seed": None,
                "params": {"trainable": 0, "total": total, "fraction": 0.0, "derived": 0, "source": "untrained base"},
                "note": None}
    digest = adapter.get("sha256")
    card = cards.get(digest) if digest else None
    if card is not None:
        counts = recorded or {key: card["params"].get(key, 0) for key in ("trainable", "total", "fraction", "derived")}
        return {"method": card["method"], "adapter_id": card["id"], "adapter_hash": digest,
                "card": card["_file"], "training_seed": card.get("seed"),
                "params": {"trainable": int(counts["trainable"]), "total": int(counts["total"]),
                           "fraction": float(counts["fraction"]), "derived": int(counts["derived"] or 0),
                           "source": "results file" if recorded else "card"},
                "note": None}
    row = {"method": method or "unknown", "adapter_id": Path(adapter.get("path") or "").name or None,
           "adapter_hash": digest, "card": None, "training_seed": None}
    if recorded:
        return {**row, "params": {**recorded, "source": "results file"},
                "note": "no card in the zoo: parameters as counted when it was evaluated (results file)"}
    unknown = {"trainable": None, "total": None, "fraction": None, "derived": None, "source": None}
    if params and "unknown" in params:
        why = f"they could not be counted when it was evaluated ({params['unknown']})"
    else:
        why = f"the results file records no parameter counts ({RERUN})"
    return {**row, "params": unknown, "note": f"no card matches the adapter's hash and {why}: parameters unknown"}
