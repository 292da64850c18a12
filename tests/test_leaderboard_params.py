"""Parameter counts travel with the results: our `lmms_eval` records the evaluated base's and adapter's trainable and
total parameters in the results file's `vlm_peft_bench` block, and the leaderboard reads them there (else from the
adapter's card, else "unknown"), counting nothing itself."""

import json

import pytest
import yaml

from vlm_peft_bench.leaderboard.build import collect
from vlm_peft_bench.lmms.cli import add_provenance
from vlm_peft_bench.methods.params import account

from .conftest import REPO
from .test_leaderboard_factory import write_card, write_run

LORA = "lora-r8__nanollava-tiny__cvbench_mini"


def _without_block(path):
    data = json.loads(path.read_text())
    del data["vlm_peft_bench"]
    path.write_text(json.dumps(data))
    return path


def _rows(doc):
    return {r["label"]: r for r in doc["rows"] if r["kind"] == "measured"}


def test_our_lmms_eval_records_the_counts_that_params_gives(tmp_path):
    base_run = _without_block(write_run(tmp_path / "base", "20260101_000000"))
    add_provenance(base_run, "pretrained=nanollava-tiny", failures=[])
    block = json.loads(base_run.read_text())["vlm_peft_bench"]
    total = account("nanollava-tiny")["total"]
    assert block["params"] == {"trainable": 0, "total": total, "fraction": 0.0} and total == 1_926_912

    folder = REPO / "adapters_zoo" / "weights" / LORA
    lora_run = _without_block(write_run(tmp_path / "lora", "20260102_000000", adapter="lora"))
    add_provenance(lora_run, f"pretrained=nanollava-tiny,adapter={folder}", failures=[])
    block = json.loads(lora_run.read_text())["vlm_peft_bench"]
    card = yaml.safe_load((REPO / "adapters_zoo" / f"{LORA}.yaml").read_text())
    assert block["adapter"]["method"] == "lora" and block["adapter"]["sha256"] == card["adapter_hash"]
    assert block["params"] == {k: card["params"][k] for k in ("trainable", "total", "fraction")}

    # no card in this zoo: the leaderboard takes the method and the counts from the results files
    doc = collect([tmp_path])
    lora, base = _rows(doc)[LORA], _rows(doc)["untrained base"]
    assert lora["method"] == "lora" and lora["card"] is None
    assert lora["params"] == {"trainable": 32_768, "total": total, "fraction": 0.0170054, "derived": 0,
                              "plotted": 0.0170054, "source": "results file"}
    assert base["params"] == {"trainable": 0, "total": total, "fraction": 0.0, "derived": 0, "plotted": 0.0,
                              "source": "untrained base"}
    assert any(f"{LORA} on" in n and "parameters as counted when it was evaluated" in n for n in doc["notes"])


def test_counts_that_cannot_be_made_are_recorded_as_unknown_with_the_reason(tmp_path, monkeypatch):
    def cannot(*args, **kwargs):
        raise OSError("config.json: no such file")

    monkeypatch.setattr("vlm_peft_bench.methods.params.account", cannot)
    path = _without_block(write_run(tmp_path / "odd", "20260101_000000", adapter="odd"))
    add_provenance(path, f"pretrained=nanollava-tiny,adapter={REPO / 'adapters_zoo' / 'weights' / LORA}", [])
    block = json.loads(path.read_text())["vlm_peft_bench"]
    assert block["params"] == {"unknown": "OSError: config.json: no such file"}
    doc = collect([tmp_path])
    (row,) = _rows(doc).values()
    assert row["params"]["fraction"] is None and row["method"] == "lora"
    assert any("could not be counted when it was evaluated (OSError: config.json: no such file): parameters "
               "unknown" in n for n in doc["notes"])


def _record(path, params, method=None):
    data = json.loads(path.read_text())
    data["vlm_peft_bench"]["params"] = params
    if method:
        data["vlm_peft_bench"]["adapter"]["method"] = method
    path.write_text(json.dumps(data))


def test_the_results_file_comes_first_then_the_card_then_unknown(tmp_path):
    results, zoo = tmp_path / "results", tmp_path / "zoo"
    _record(write_run(results / "base", "20260101_000000"), {"trainable": 0, "total": 2_000_000, "fraction": 0.0})
    _record(write_run(results / "carded", "20260102_000000", adapter="carded", accuracy=0.6),
            {"trainable": 500, "total": 2_000_000, "fraction": 0.00025})
    write_card(zoo, "carded", "lora", 400, total=1_926_912)
    write_run(results / "older", "20260103_000000", adapter="older", accuracy=0.55)  # no counts: the card's
    write_card(zoo, "older", "prefix", 16_384)
    _record(write_run(results / "ia3", "20260104_000000", adapter="ia3", accuracy=0.5),
            {"trainable": 1_000, "total": 2_000_000, "fraction": 0.0005}, method="ia3")
    write_run(results / "orphan", "20260105_000000", adapter="orphan", accuracy=0.45)  # neither: unknown
    rows = _rows(collect([results], zoo=zoo))
    assert rows["untrained base"]["params"]["total"] == 2_000_000
    assert rows["carded"]["params"] == {"trainable": 500, "total": 2_000_000, "fraction": 0.00025, "derived": 0,
                                        "plotted": 0.00025, "source": "results file"}
    assert rows["carded"]["method"] == "lora" and rows["carded"]["card"].endswith("zoo/carded.yaml")
    assert rows["older"]["params"]["trainable"] == 16_384 and rows["older"]["params"]["source"] == "card"
    assert rows["ia3"]["method"] == "ia3" and rows["ia3"]["params"]["source"] == "results file"
    assert rows["orphan"]["method"] == "unknown" and rows["orphan"]["params"]["fraction"] is None


@pytest.mark.parametrize(("params", "expected"), [
    ("many", "'vlm_peft_bench.params' is a string, expected an object"),
    ({"trainable": 5, "total": 0, "fraction": 0.5}, "'vlm_peft_bench.params.total' is 0, expected a whole number > 0"),
    ({"trainable": 5, "fraction": 0.5}, "'vlm_peft_bench.params.total' is missing"),
    ({"trainable": 5, "total": 9, "fraction": 1.5}, "'vlm_peft_bench.params.fraction' is 1.5, expected a number in"),
    ({"unknown": 3}, "'vlm_peft_bench.params.unknown' is a number, expected a string (the reason)"),
])
def test_bad_recorded_counts_are_refused_naming_the_field(tmp_path, params, expected):
    from vlm_peft_bench.leaderboard.problems import BadFile
    from vlm_peft_bench.leaderboard.results import read_results

    path = write_run(tmp_path, "20260101_000000")
    _record(path, params)
    with pytest.raises(BadFile) as refused:
        read_results(path)
    assert expected in refused.value.problem.what
