"""coco_captions / vqa_v2 and their bundled twins: data, task loading, scoring glue, and an end-to-end run."""

import collections
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from lmms_eval.tasks import TaskManager, get_task_dict

import vlm_peft_bench.scoring as scoring
from vlm_peft_bench.lmms import caption_vqa_metrics as cvm
from vlm_peft_bench.lmms.dataset_task import DatasetError
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench_build.synthetic.caption_references import generate_captions
from vlm_peft_bench_build.synthetic.vqa_answers import generate_vqa
from vlm_peft_bench_build.synthetic.write_caption_vqa_mini import COCO_CAPTION_FEATURES, VQA_V2_FEATURES

from .conftest import REPO, two_process_command

COCO_MINI = REPO / "tasks" / "coco_captions" / "mini" / "test.parquet"
VQA_MINI = REPO / "tasks" / "vqa_v2" / "mini" / "test.parquet"
CAPTION_METRICS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE"]
VQA_METRICS = ["vqa_accuracy", "vqa_accuracy_yes_no", "vqa_accuracy_number", "vqa_accuracy_other"]
BIN = Path(sys.executable).parent


def parquet(path):
    return load_dataset("parquet", data_files={"test": str(path)})["test"]


def task_utils(folder):
    """A task folder's utils.py, imported the way lmms-eval does (from its file)."""
    spec = importlib.util.spec_from_file_location(f"{folder}_utils", tasks_dir() / folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manager():
    return TaskManager("ERROR", include_path=[str(tasks_dir())])


@pytest.fixture(autouse=True)
def fresh_cache():
    cvm._cache.clear()
    cvm._per_item.clear()
    yield
    cvm._cache.clear()


# --- bundled data ---------------------------------------------------------------------------------------------


def test_caption_twin_has_the_lmms_lab_schema_and_five_references():
    ds = parquet(COCO_MINI)
    assert ds.features == COCO_CAPTION_FEATURES
    assert len(ds) == 200 and len(set(ds["question_id"])) == 200 and len(set(ds["id"])) == 200
    for row in ds.select(range(0, 200, 17)):
        assert len(row["answer"]) == 5 and len(set(row["answer"])) == 5
        assert all(isinstance(c, str) and len(c.split()) >= 3 for c in row["answer"])
        assert int(row["question_id"].split("_")[-1].split(".")[0]) == row["id"]  # as lmms-eval's coco utils parse it
        assert row["image"].size == (row["width"], row["height"])
    assert COCO_MINI.stat().st_size < 1_500_000


def test_vqa_twin_has_the_lmms_lab_schema_and_ten_varied_answers():
    ds = parquet(VQA_MINI)
    assert ds.features == VQA_V2_FEATURES
    assert len(ds) == 300 and len(set(ds["question_id"])) == 300
    types = collections.Counter(ds["answer_type"])
    assert set(types) == {"yes/no", "number", "other"} and min(types.values()) >= 40
    assert set(ds.select(range(3))["answer_type"]) == {"yes/no", "number", "other"}  # a small --limit sees all three
    unanimous = mixed_numbers = multi_word = 0
    for row in ds:
        answers = [a["answer"] for a in row["answers"]]
        assert len(answers) == 10 and [a["answer_id"] for a in row["answers"]] == list(range(1, 11))
        assert {a["answer_confidence"] for a in row["answers"]} <= {"yes", "maybe", "no"}
        assert row["multiple_choice_answer"] == collections.Counter(answers).most_common(1)[0][0]
        assert row["question_id"] // 1000 == row["image_id"]
        unanimous += len(set(answers)) == 1
        mixed_numbers += row["answer_type"] == "number" and any(a.isdigit() for a in answers) and any(
            a.isalpha() for a in answers)
        multi_word += any(len(a.split()) >= 2 for a in answers)
    assert 20 <= unanimous <= 200 and mixed_numbers >= 10 and multi_word >= 50
    assert VQA_MINI.stat().st_size < 1_500_000


@pytest.mark.parametrize("path, generate", [(COCO_MINI, generate_captions), (VQA_MINI, generate_vqa)])
def test_bundled_data_is_what_the_generator_makes(path, generate):
    stored, fresh = parquet(path), generate()
    assert len(stored) == len(fresh)
    for i, item in enumerate(fresh):
        row = stored[i]
        assert {k: v for k, v in row.items() if k != "image"} == {k: v for k, v in item.items() if k != "image"}
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(item["image"]))


# --- tasks ----------------------------------------------------------------------------------------------------


def test_task_names_do_not_clash_with_lmms_eval_builtins(manager):
    # on a clash lmms-eval would index one YAML only; ours must be the ones found, and the built-ins still there
    for name in ("coco_captions", "coco_captions_mini", "vqa_v2", "vqa_v2_mini"):
        assert Path(manager.task_index[name]["yaml_path"]).is_relative_to(tasks_dir())
    for name in ("coco2017_cap_val", "vqav2_val"):
        assert "site-packages" in manager.task_index[name]["yaml_path"]


def test_mini_tasks_load_with_fixed_prompts_and_greedy_generation(manager):
    tasks = get_task_dict(["coco_captions_mini", "vqa_v2_mini"], manager)
    coco, vqa = tasks["coco_captions_mini"], tasks["vqa_v2_mini"]
    assert len(coco.test_docs()) == 200 and len(vqa.test_docs()) == 300
    caption_prompt = task_utils("coco_captions").CAPTION_PROMPT
    vqa_post = task_utils("vqa_v2").POST_PROMPT
    assert caption_prompt == "Provide a one-sentence caption for the provided image."
    assert vqa_post == "\nAnswer the question using a single word or phrase."
    # the prompts travel in the task configs that lmms-eval writes into every results file
    assert coco.config.lmms_eval_specific_kwargs["default"]["prompt"] == caption_prompt
    assert vqa.config.lmms_eval_specific_kwargs["default"]["post_prompt"] == vqa_post
    doc = vqa.test_docs()[0]
    assert vqa.doc_to_text(doc) == doc["question"] + vqa_post
    assert coco.doc_to_text(coco.test_docs()[0]) == caption_prompt
    for task, max_new in ((coco, 64), (vqa, 16)):
        gen = task.config.generation_kwargs
        assert gen["until"] == ["<|im_end|>"] and gen["max_new_tokens"] == max_new
        assert gen["do_sample"] is False and gen["temperature"] == 0 and gen["num_beams"] == 1
    assert list(coco.aggregation()) == CAPTION_METRICS
    assert list(vqa.aggregation()) == VQA_METRICS


@pytest.mark.parametrize("task, env", [("coco_captions", "VLM_PEFT_BENCH_COCO_CAPTIONS"),
                                       ("vqa_v2", "VLM_PEFT_BENCH_VQA_V2")])
def test_real_tasks_fail_fast_offline(manager, monkeypatch, task, env):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(DatasetError, match=f"not in the local cache.*{env}"):
        get_task_dict([task], manager)


def test_real_tasks_read_local_copies(manager, monkeypatch, tmp_path):
    # a parquet file, and the folder `huggingface-cli download ... --include "data/validation-*"` makes
    monkeypatch.setenv("VLM_PEFT_BENCH_COCO_CAPTIONS", str(COCO_MINI))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "validation-00000-of-00001.parquet").write_bytes(VQA_MINI.read_bytes())
    monkeypatch.setenv("VLM_PEFT_BENCH_VQA_V2", str(tmp_path))
    tasks = get_task_dict(["coco_captions", "vqa_v2"], manager)
    assert len(tasks["coco_captions"].test_docs()) == 200
    assert len(tasks["vqa_v2"].test_docs()) == 300


# --- scoring glue (real scorers) ------------------------------------------------------------------------------

CAPTION_DOCS = [
    {"question_id": "000000000001.jpg", "id": 1, "answer": ["a red circle on a white background.",
                                                             "one red circle", "A single red round shape."]},
    {"question_id": "000000000002.jpg", "id": 2, "answer": ["two blue squares and a green triangle.",
                                                             "Three shapes: two squares and a triangle."]},
    {"question_id": "000000000003.jpg", "id": 3, "answer": ["a black diamond in the middle.",
                                                             "a dark diamond shape", "one black diamond"]},
]


def caption_results(predictions):
    coco = task_utils("coco_captions")
    return [coco.process_results(doc, [p]) for doc, p in zip(CAPTION_DOCS, predictions)]


def aggregate_all(per_item):
    """Every caption metric's aggregation, each from its own copy of utils.py (as lmms-eval's `!function` loads)."""
    return {m: getattr(task_utils("coco_captions"), f"aggregate_{m.lower()}")([r[m] for r in per_item])
            for m in CAPTION_METRICS}


def test_caption_record_keeps_response_and_references():
    per_item = caption_results(["a red circle\non white.", "", "a black diamond"])
    first = per_item[0]
    assert set(first) == set(CAPTION_METRICS) and all(first[m] is first["Bleu_1"] for m in CAPTION_METRICS)
    assert first["Bleu_1"]["response"] == "a red circle\non white."
    assert first["Bleu_1"]["prediction"] == "a red circle on white."
    assert first["Bleu_1"]["references"] == CAPTION_DOCS[0]["answer"]
    assert per_item[1]["CIDEr"]["prediction"] == ""
    assert cvm.caption_record(CAPTION_DOCS[0], [])["prediction"] == ""  # no generation at all: empty, no crash


@pytest.mark.slow
def test_caption_metrics_share_one_whole_split_scoring_pass(monkeypatch):
    calls, returned = [], []
    real = scoring.caption_report

    def counting(predictions, references, *args, **kwargs):
        calls.append((dict(predictions), dict(references)))
        if len(calls) > 1:  # later passes only count (one real pass is enough: METEOR's JVM is slow to start)
            return scoring.CaptionReport({m: 0.0 for m in CAPTION_METRICS})
        returned.append(real(predictions, references, *args, **kwargs).scores)
        return scoring.CaptionReport(returned[-1])

    monkeypatch.setattr(scoring, "caption_report", counting)
    predictions = ["a red circle on a white background", "", "a black diamond\nin the middle"]
    per_item = caption_results(predictions)
    scores = aggregate_all(per_item)
    assert len(calls) == 1  # eight metrics, one pass, all items together:
    assert calls[0] == ({d["question_id"]: " ".join(p.split()) for d, p in zip(CAPTION_DOCS, predictions)},
                        {d["question_id"]: d["answer"] for d in CAPTION_DOCS})
    for metric in CAPTION_METRICS[:-1]:
        assert isinstance(scores[metric], float) and scores[metric] == returned[0][metric]
    assert 0 < scores["Bleu_1"] <= 1 and scores["CIDEr"] > 0
    spice = scores["SPICE"]
    assert (isinstance(spice, float) and math.isfinite(spice)) or spice == cvm.spice_note(scoring.spice_status())
    # the same records again: no new pass; other records (one prediction changed): a new pass
    aggregate_all(list(reversed(per_item)))
    assert len(calls) == 1
    aggregate_all(caption_results(["a red circle", "", "a black diamond"]))
    assert len(calls) == 2


def test_duplicate_caption_ids_are_refused():
    per_item = caption_results(["a", "b", "c"])
    with pytest.raises(ValueError, match="appears twice"):
        cvm.corpus_caption_scores([r["CIDEr"] for r in per_item + per_item[:1]])


@pytest.mark.parametrize("spice", ["absent", math.nan, 0.25])
def test_spice_is_a_value_or_an_explicit_note(monkeypatch, spice):
    """Only the SPICE entry is simulated here: the representation of an unavailable SPICE."""

    def fake(predictions, references, *args, **kwargs):
        out = {m: 0.5 for m in CAPTION_METRICS[:-1]}
        if spice != "absent":
            out["SPICE"] = spice
        per_item = {} if spice == "absent" else {"SPICE": {i: spice for i in predictions}}
        return scoring.CaptionReport(out, per_item)

    monkeypatch.setattr(scoring, "caption_report", fake)
    records = [r["SPICE"] for r in caption_results(["a", "b", "c"])]
    value = aggregate_all(caption_results(["a", "b", "c"]))["SPICE"]
    kept = cvm.per_item_scores(records)
    assert cvm.per_item_scores(records) == {}  # handed over once
    if spice == 0.25:
        assert value == 0.25
        assert kept == {"SPICE": {r["id"]: 0.25 for r in records}}
    else:  # a short note that says so and where to look; no per-item scores are kept for a note
        assert isinstance(value, str) and value.startswith("SPICE unavailable: ") and len(value) <= 130
        assert value.endswith("(see docs/tasks.md: SPICE)")
        assert kept == {}


VQA_DOC = {"question_id": 7000, "answer_type": "number", "multiple_choice_answer": "3",
           "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                       for i, a in enumerate(["2", "two", "2"] + ["3"] * 7)]}


def test_vqa_item_uses_the_official_accuracy_on_the_stripped_response():
    vqa = task_utils("vqa_v2")
    out = vqa.process_results(VQA_DOC, ["  3\n"])
    assert set(out) == set(VQA_METRICS)
    record = out["vqa_accuracy_number"]
    assert record["response"] == "  3\n" and record["prediction"] == "3"
    assert out["vqa_accuracy"] == record["accuracy"] == 1.0
    answers = [a["answer"] for a in VQA_DOC["answers"]]
    assert out["vqa_accuracy"] == scoring.vqa_accuracy("3", answers)
    # "two" is normalized to "2" because the ten answers differ: 3 matches -> 0.9, as officially
    assert vqa.process_results(VQA_DOC, ["two"])["vqa_accuracy"] == pytest.approx(0.9)
    assert vqa.process_results(VQA_DOC, [""])["vqa_accuracy"] == 0.0
    assert vqa.process_results(VQA_DOC, [None])["vqa_accuracy"] == 0.0


def test_vqa_answer_type_breakdown():
    vqa = task_utils("vqa_v2")
    records = [{"answer_type": t, "accuracy": a} for t, a in
               [("yes/no", 1.0), ("yes/no", 0.0), ("number", 0.6), ("other", 0.3), ("other", 0.9)]]
    assert vqa.aggregate_yes_no(records) == pytest.approx(0.5)
    assert vqa.aggregate_number(records) == pytest.approx(0.6)
    assert vqa.aggregate_other(records) == pytest.approx(0.6)
    assert math.isnan(vqa.aggregate_number(records[:2]))


# --- end to end -----------------------------------------------------------------------------------------------

RUN = ["--model", "vlreft", "--model_args", "pretrained=nanollava-tiny", "--tasks", "coco_captions_mini,vqa_v2_mini",
       "--batch_size", "4", "--limit", "6", "--log_samples"]


def run(cmd, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def results(out: Path) -> dict:
    [path] = list(out.glob("nanollava-tiny/*_results.json"))
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    proc = run([str(BIN / "lmms_eval"), *RUN, "--output_path", str(tmp / "out")], cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp / "out", proc.stdout


@pytest.mark.slow
def test_lmms_eval_writes_every_caption_and_vqa_metric(single_run):
    out, stdout = single_run
    data = results(out)
    captions, vqa = data["results"]["coco_captions_mini"], data["results"]["vqa_v2_mini"]
    for metric in CAPTION_METRICS[:-1]:
        assert isinstance(captions[f"{metric},none"], float) and captions[f"{metric},none"] >= 0
    spice = captions["SPICE,none"]
    if isinstance(spice, str):  # the short note as the value (and in the printed table), the full reason beside
        assert spice == cvm.spice_note(scoring.spice_status()) and spice in stdout
        assert data["vlm_peft_bench"]["notes"]["SPICE"] == scoring.spice_status()
    else:
        assert math.isfinite(spice) and "notes" not in data["vlm_peft_bench"]
    for metric in VQA_METRICS:
        assert 0.0 <= vqa[f"{metric},none"] <= 1.0
    assert data["n-samples"]["coco_captions_mini"]["effective"] == 6
    assert data["configs"]["coco_captions_mini"]["lmms_eval_specific_kwargs"]["prompt"] == (
        "Provide a one-sentence caption for the provided image.")
    assert data["vlm_peft_bench"]["prompt_template"].startswith("<|im_start|>user\n<image>\n{prompt}")
    [samples] = list(out.glob("nanollava-tiny/*_samples_vqa_v2_mini.jsonl"))
    record = json.loads(samples.read_text().splitlines()[0])["vqa_accuracy_other"]
    assert {"response", "prediction", "accuracy", "answer_type", "question_id"} <= set(record)
    [samples] = list(out.glob("nanollava-tiny/*_samples_coco_captions_mini.jsonl"))
    record = json.loads(samples.read_text().splitlines()[0])["CIDEr"]
    assert {"response", "prediction", "references", "id"} <= set(record)


@pytest.mark.slow
def test_two_processes_score_the_whole_split_like_one(single_run, tmp_path):
    """Two CPU processes (torchrun): rank 0 scores the gathered split, so the numbers are the same."""
    args = [*RUN, "--include_path", str(REPO / "tasks"), "--output_path", str(tmp_path / "out")]
    proc = run(two_process_command("-m", "lmms_eval", *args), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "vlreft: data parallel over 2 processes" in proc.stdout + proc.stderr
    one, two = results(single_run[0])["results"], results(tmp_path / "out")["results"]
    for task in ("coco_captions_mini", "vqa_v2_mini"):
        assert {k: v for k, v in one[task].items() if "stderr" not in k} == {
            k: v for k, v in two[task].items() if "stderr" not in k}
