"""The per-sample answer log that lets a killed run resume: durability, damage and version checks."""

import json

import pytest

from vlm_peft_bench.lmms.answer_log import Answer, AnswerLog, AnswerLogError, request_key

IDENTITY = {"model_hash": "abc", "adapter_sha256": None, "dtype": "torch.float32", "run": "seed=0"}


def answers(n, start=0):
    return [Answer(f"k{i}", "generate_until", "cvbench_mini", i, f"({'ABCD'[i % 4]})") for i in range(start, n)]


def test_answers_written_are_read_back_by_a_new_log(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(3))
    log.close()
    again = AnswerLog(tmp_path, IDENTITY)
    assert again.get("k1").answer == "(B)"
    assert len(again.answers) == 3
    header = json.loads(log.path.read_text().splitlines()[0])
    assert header == {"schema": "vlm-peft-bench/answers", "version": 1, "model": IDENTITY}


def test_another_identity_never_sees_these_answers(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(2))
    other = AnswerLog(tmp_path, {**IDENTITY, "adapter_sha256": "f00d"})
    assert other.path != log.path
    assert other.get("k0") is None


def test_partial_last_line_is_dropped_and_cut_before_appending(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(2))
    log.close()
    with open(log.path, "a") as f:
        f.write('{"key": "k2", "type": "generate_until", "ta')  # killed mid-write
    resumed = AnswerLog(tmp_path, IDENTITY)
    assert resumed.dropped_partial == 1
    assert set(resumed.answers) == {"k0", "k1"}
    resumed.append(answers(3, start=2))
    resumed.close()
    lines = log.path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert AnswerLog(tmp_path, IDENTITY).get("k2").answer == "(C)"


def test_damaged_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(3))
    log.close()
    lines = log.path.read_text().splitlines()
    lines[2] = lines[2][:20]
    log.path.write_text("\n".join(lines) + "\n")
    before = log.path.read_bytes()
    with pytest.raises(AnswerLogError, match=rf"{log.path.name}, line 3: not a valid answer record"):
        AnswerLog(tmp_path, IDENTITY)
    assert log.path.read_bytes() == before  # nothing finished is lost


def test_record_missing_a_field_is_named(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(1))
    log.close()
    with open(log.path, "a") as f:
        f.write(json.dumps({"key": "k9", "type": "generate_until", "task": "t"}) + "\n")
    with pytest.raises(AnswerLogError, match="line 3: answer record lacks field 'doc_id'"):
        AnswerLog(tmp_path, IDENTITY)


def test_log_of_another_schema_version_is_refused(tmp_path):
    log = AnswerLog(tmp_path, IDENTITY)
    log.append(answers(1))
    log.close()
    lines = log.path.read_text().splitlines()
    lines[0] = json.dumps({"schema": "vlm-peft-bench/answers", "version": 99, "model": IDENTITY})
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnswerLogError, match="line 1: answer log of schema 'vlm-peft-bench/answers' version 99"):
        AnswerLog(tmp_path, IDENTITY)


def test_every_rank_reads_all_ranks_files_and_writes_its_own(tmp_path):
    rank0, rank1 = AnswerLog(tmp_path, IDENTITY, rank=0), AnswerLog(tmp_path, IDENTITY, rank=1)
    rank0.append(answers(2))
    rank1.append(answers(4, start=2))
    rank0.close()
    rank1.close()
    assert rank0.path != rank1.path
    assert set(AnswerLog(tmp_path, IDENTITY, rank=0).answers) == {"k0", "k1", "k2", "k3"}


def test_request_key_depends_on_every_input():
    base = dict(request_type="generate_until", task="t", split="test", doc_id=1, dataset_fingerprint="d",
                context="Which is closer?", gen_kwargs={"max_new_tokens": 8})
    key = request_key(**base)
    for field, other in [("task", "u"), ("split", "val"), ("doc_id", 2), ("dataset_fingerprint", "e"),
                         ("context", "Which is farther?"), ("gen_kwargs", {"max_new_tokens": 9})]:
        assert request_key(**{**base, field: other}) != key, field
    assert request_key(**{**base, "gen_kwargs": {"max_new_tokens": 8}}) == key
