"""Every adapter card in adapters_zoo matches its files and reproduces its score through `lmms_eval`.

The zoo's weights are saved under transformers 4.45's module names. On the stack a card records (its `versions`)
the run reproduces it exactly: every answer recorded in `adapters_zoo/answers/` and every score to 1e-4. On another
transformers release (5.x) the adapters load through the layout renaming, and since the tiny base's logits differ by
about 1e-5 across releases, a few near-tied answers may flip: at least 99% of the answers must be identical and every
score within 0.005. The untrained base is checked the same way against the cards' `base_test`.

`adapters_zoo/answers/<card id>.json` (and `base__<base>__<task>.json`) hold the greedy answers by doc_id, taken
from `--log_samples` of the card's own command on the card's stack (`answers_of` reads them).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
import yaml

from vlm_peft_bench.methods.params import account
from vlm_peft_bench.provenance import file_sha256

from .conftest import REPO

CARDS = sorted((REPO / "adapters_zoo").glob("*.yaml"))
ANSWERS = REPO / "adapters_zoo" / "answers"
BASE_RUN = "base__nanollava-tiny__cvbench_mini"
SAME_STACK = {"answers": 1.0, "score": 1e-4}
OTHER_STACK = {"answers": 0.99, "score": 0.005}


def answers_of(samples: Path) -> list:
    """The greedy answers of a `--log_samples` file, in doc_id order."""
    rows = sorted((json.loads(line) for line in samples.read_text().splitlines() if line.strip()),
                  key=lambda r: r["doc_id"])
    return [r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"] for r in rows]


def tolerances(card: dict) -> dict:
    return SAME_STACK if card["versions"]["transformers"] == transformers.__version__ else OTHER_STACK


def run_lmms_eval(model_args: str, task: str, out: Path) -> tuple[dict, list]:
    cmd = [str(Path(sys.executable).parent / "lmms_eval"), "--model", "vlreft", "--model_args", model_args,
           "--tasks", task, "--batch_size", "8", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [results] = list(out.rglob("*_results.json"))
    [samples] = list(out.rglob(f"*_samples_{task}.jsonl"))
    return json.loads(results.read_text()), answers_of(samples)


def check_reproduced(name: str, expected: dict, data: dict, answers: list, limits: dict) -> None:
    """Scores and answers against the card's: within `limits`, with what was measured printed."""
    task = data["results"]
    [task_name] = list(task)
    recorded = json.loads((ANSWERS / f"{name}.json").read_text())["answers"]
    same = sum(a == b for a, b in zip(answers, recorded)) / len(recorded)
    deltas = {m: abs(task[task_name][f"{m},none"] - v) for m, v in expected["scores"].items()}
    print(f"{name}: {same:.2%} of {len(recorded)} answers identical to the card's stack; "
          f"{expected['metric']} {task[task_name][expected['metric'] + ',none']:.4f} (card {expected['value']}); "
          f"largest score difference {max(deltas.values()):.4f} ({max(deltas, key=deltas.get)})")
    assert len(answers) == len(recorded)
    assert same >= limits["answers"]
    assert max(deltas.values()) <= limits["score"]
    assert task[task_name][f"{expected['metric']},none"] == pytest.approx(expected["value"], abs=limits["score"])


def test_zoo_has_a_card_per_reference_recipe():
    recipes = {yaml.safe_load(c.read_text())["recipe"] for c in CARDS}
    assert {"reft-r4-all", "lora-r8", "full-ft", "prefix-16", "pt-lora"} <= recipes


@pytest.mark.parametrize("card_path", CARDS, ids=[c.stem.split("__")[0] for c in CARDS])
def test_card_matches_files_params_and_lmms_eval(card_path, tmp_path):
    card = yaml.safe_load(card_path.read_text())
    weights = REPO / card["weights"]
    for name, digest in card["files_sha256"].items():
        assert file_sha256(weights / name) == digest, f"{name} changed since the card was written"
    counted = account(card["base"]["name"], adapter=str(weights))
    assert counted["trainable"] == card["params"]["trainable"]
    beats = card["test"]["value"] > card["base_test"]["ci95"][1]
    assert card["beats_untrained_base_beyond_ci95"] is beats
    data, answers = run_lmms_eval(f"pretrained={card['base']['name']},adapter={card['weights']}",
                                  card["task"]["name"], tmp_path)
    assert data["vlm_peft_bench"]["adapter"]["sha256"] == card["adapter_hash"]
    check_reproduced(card["id"], card["test"], data, answers, tolerances(card))


def test_untrained_base_reproduces_the_cards_base_score(tmp_path):
    cards = [yaml.safe_load(c.read_text()) for c in CARDS]
    card = cards[0]
    assert all(c["base_test"] == card["base_test"] for c in cards), "the cards disagree on the base's score"
    data, answers = run_lmms_eval(f"pretrained={card['base']['name']}", card["task"]["name"], tmp_path)
    check_reproduced(BASE_RUN, card["base_test"], data, answers, tolerances(card))
