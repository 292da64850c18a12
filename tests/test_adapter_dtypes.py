"""Every kind of zoo adapter evaluates in bfloat16, vlreft's default dtype on GPUs (checked here on the CPU)."""

import pytest
import torch
from lmms_eval.api.instance import Instance

from vlm_peft_bench.lmms.vlreft import VLReft

from .conftest import REPO

ZOO = REPO / "adapters_zoo" / "weights"
TASK = "cvbench_mini"
GREEDY = {"until": ["<|im_end|>"], "max_new_tokens": 4, "temperature": 0, "do_sample": False}


def visual(doc):
    return [doc["image"].convert("RGB")]


def bf16_model(mini_test, adapter=None):
    model = VLReft(pretrained="nanollava-tiny", device="cpu", dtype="bfloat16", batch_size=2,
                   **({"adapter": str(adapter)} if adapter else {}))
    model.task_dict = {TASK: {"test": mini_test}}
    return model


def first_logits(model, mini_test):
    inputs, lengths = model.runner.inputs([mini_test[0]["prompt"]], [visual(mini_test[0])[0]])
    with torch.inference_mode():
        return model.runner.logits(inputs, lengths)[0, -1]


@pytest.mark.parametrize("folder", sorted(p.name for p in ZOO.iterdir() if p.is_dir()))
def test_zoo_adapter_generates_in_bfloat16(folder, mini_test):
    model = bf16_model(mini_test, ZOO / folder)
    assert model.model.dtype == torch.bfloat16
    requests = [Instance("generate_until", (mini_test[i]["prompt"], dict(GREEDY), visual, i, TASK, "test"), idx=0,
                         metadata={"task": TASK, "doc_id": i, "repeats": 1}) for i in range(3)]
    texts = model.generate_until(requests)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    logits = first_logits(model, mini_test)
    assert torch.isfinite(logits).all()
    if model.adapter.reft is not None:  # the float32 intervention really acts on the bf16 stream
        assert not torch.equal(logits, first_logits(bf16_model(mini_test), mini_test))
