"""Zoo cards: `adapters_zoo/<id>.yaml` (what an adapter is, its parameters, hashes and test score against the
untrained base's) and `adapters_zoo/answers/<id>.json` (its answers by doc_id, from which tests/test_zoo.py
re-derives every claim). `train` writes one for what it trains; `vlm-peft-bench card` for an adapter made another
way (a steering vector, a combination of adapters, a third party's), recording how it was derived."""

from __future__ import annotations

from pathlib import Path

import yaml

from vlm_peft_bench.adapters.detect import AdapterError, read_json_object
from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.methods.attach import adapter_file_hashes
from vlm_peft_bench.methods.params import account
from vlm_peft_bench.methods.table import method_name, recognise
from vlm_peft_bench.nanollava.provenance import model_provenance
from vlm_peft_bench.paths import display_path
from vlm_peft_bench.provenance import combined_hash
from vlm_peft_bench.train.evaluation import Evaluation, evaluate_with_lmms, write_answers

# The record an adapter folder keeps of how it was made, when it was not trained (steering/, arithmetic.py).
DERIVATION_FILES = ("steering.json", "combination.json", "composition.json")


def evaluate_card(card: dict, task_name: str, base: str, adapter: Path, seed: int) -> dict[str, Evaluation]:
    """Score the adapter and the untrained base on the test split into `card` (test, base_test and whether the
    adapter beats the base's upper 95% bound); the evaluations by the name their answers are kept under."""
    mine = evaluate_with_lmms(task_name, base, adapter, seed)
    untrained = evaluate_with_lmms(task_name, base, None, seed)
    card["test"], card["base_test"] = mine.summary, untrained.summary
    card["beats_untrained_base_beyond_ci95"] = mine.summary["value"] > untrained.summary["ci95"][1]
    return {card["id"]: mine, f"base__{base}__{task_name}": untrained}


def write_card(card: dict, card_dir: Path | str, evaluations: dict[str, Evaluation] | None = None) -> Path:
    """The card as `<card_dir>/<id>.yaml`, and each evaluation's answers under `<card_dir>/answers/`."""
    card_dir = Path(card_dir)
    for name, evaluation in (evaluations or {}).items():
        write_answers(card_dir / "answers", name, evaluation)
    write_files(card_dir, {f"{card['id']}.yaml": yaml.safe_dump(card, sort_keys=False, width=110).encode()})
    return card_dir / f"{card['id']}.yaml"


def derived_card(adapter: Path | str, task_name: str, base: str, seed: int = 0, card_id: str | None = None) -> dict:
    """The card of an adapter folder that `train` did not make: its method from its files, its parameters
    (trainable and derived) counted from them, and the derivation record it carries (parents, data, strength)."""
    adapter = Path(adapter)
    info = recognise(adapter)
    params = account(base, adapter=str(adapter))
    derivation = {}
    for name in DERIVATION_FILES:
        if (adapter / name).is_file():
            derivation = {"file": name, **read_json_object(adapter / name)}
            break
    files = adapter_file_hashes(adapter)
    if not files:
        raise AdapterError(f"{adapter}: no files to describe")
    base_info = model_provenance(base)
    card_id = card_id or adapter.name
    if "/" in card_id or not card_id.strip():
        raise AdapterError(f"card id {card_id!r}: a file name is needed (no '/')")
    return {
        "id": card_id,
        "method": method_name(adapter, info),
        "base": {"name": base, "hash": base_info["model_hash"]},
        "task": {"name": task_name, "test": "test split"},
        "params": {k: params[k] for k in ("trainable", "total", "fraction", "percent", "derived", "derived_fraction")
                   if k in params},
        "seed": seed,
        "derivation": derivation or None,
        "files_sha256": files,
        "adapter_hash": combined_hash(files),
        "weights": display_path(adapter),
        "versions": base_info["versions"],
    }
