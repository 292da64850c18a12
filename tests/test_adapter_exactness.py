"""Adapters applied by vlm-peft-bench give the logits of pyreft's / peft's own forward (fp32, tolerance 1e-5).

The ReFT folders are written by our pyreft-format writer; pyreft reads them back (`pyreft_model`) for its forward.
Without pyreft those comparisons skip with the reason."""

import pytest
import torch
from PIL import Image

from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava

from .adapter_factory import lora_model, pyreft_model, reference_locations, reft_interventions, save_reft

TOL = 1e-5
PROMPTS = ["How many black squares are in the image?", "Where is it?", "Which object is closer to the camera?"]


def batch_for(processor, prompts):
    images = [Image.new("RGB", (64 + 9 * i, 64), (40 * i, 200, 90)) for i in range(len(prompts))]
    batch = processor(prompts, images)
    lengths = [len(ids) for ids in processor.encode([processor.prompt(p) for p in prompts])]
    return batch, lengths


@pytest.mark.parametrize("intervention", ["LoreftIntervention", "NoreftIntervention", "DireftIntervention"])
@pytest.mark.parametrize("n_prompts", [1, 3])
def test_reft_matches_pyreft_forward(tmp_path, intervention, n_prompts):
    folder = save_reft(reft_interventions(intervention), tmp_path / "reft")
    rm = pyreft_model(folder)
    loaded = load_nanollava("nanollava-tiny")
    batch, lengths = batch_for(loaded.processor, PROMPTS[:n_prompts])
    locations = reference_locations("f3+m3+l3", lengths, batch["input_ids"].shape[1])
    with torch.no_grad():
        _, expected = rm(dict(batch), unit_locations={"sources->base": (None, [locations] * 4)})
    attached = attach_adapter(loaded.model, str(folder))
    with torch.no_grad(), attached.reft.intervene(batch["attention_mask"], lengths, first_forward_only=False):
        got = attached.model(**batch).logits
    mask = batch["attention_mask"].bool()
    assert (got - expected.logits)[mask].abs().max() < TOL
    with torch.no_grad():
        bare = attached.model(**batch).logits  # outside the block: no intervention
    assert (bare - expected.logits)[mask].abs().max() > 1e-2, "the intervention must change the logits"


def test_reft_left_padded_rows_equal_single_rows(tmp_path):
    loaded = load_nanollava("nanollava-tiny")
    attached = attach_adapter(loaded.model, str(save_reft(reft_interventions(), tmp_path / "reft")))
    batch, lengths = batch_for(loaded.processor, PROMPTS)
    with torch.no_grad(), attached.reft.intervene(batch["attention_mask"], lengths, False):
        together = attached.model(**batch).logits
    for i, prompt in enumerate(PROMPTS):
        single, n = batch_for(loaded.processor, [prompt])
        single["pixel_values"] = batch["pixel_values"][i:i + 1]
        with torch.no_grad(), attached.reft.intervene(single["attention_mask"], n, False):
            alone = attached.model(**single).logits[0]
        assert (together[i, -lengths[i]:] - alone).abs().max() < 1e-4


def test_reft_unshared_groups_follow_pyreft_order(tmp_path):
    """Without shared weights pyreft keeps one intervention per (group, layer), group by group."""
    folder = save_reft(reft_interventions(layers=(1, 2, 1, 2)), tmp_path / "r", "f3+l3", share_weights=False)
    rm = pyreft_model(folder)
    loaded = load_nanollava("nanollava-tiny")
    batch, lengths = batch_for(loaded.processor, PROMPTS[:2])
    width = batch["input_ids"].shape[1]
    first = reference_locations("f3", lengths, width)
    last = [[width - 3 + i for i in range(3)] for _ in lengths]
    with torch.no_grad():
        _, expected = rm(dict(batch), unit_locations={"sources->base": (None, [first, first, last, last])})
    attached = attach_adapter(loaded.model, str(folder))
    with torch.no_grad(), attached.reft.intervene(batch["attention_mask"], lengths, False):
        got = attached.model(**batch).logits
    assert (got - expected.logits)[batch["attention_mask"].bool()].abs().max() < TOL


@pytest.mark.parametrize("n_prompts", [1, 3])
def test_lora_matches_peft_forward(tmp_path, n_prompts):
    reference = lora_model()
    reference.save_pretrained(tmp_path / "lora")
    loaded = load_nanollava("nanollava-tiny")
    batch, _ = batch_for(loaded.processor, PROMPTS[:n_prompts])
    with torch.no_grad():
        expected = reference(**batch).logits
        bare = loaded.model(**batch).logits
    attached = attach_adapter(loaded.model, str(tmp_path / "lora"))
    with torch.no_grad():
        got = attached.model(**batch).logits
    mask = batch["attention_mask"].bool()
    assert (got - expected)[mask].abs().max() < TOL
    assert (bare - expected)[mask].abs().max() > 1e-2


def test_merged_lora_is_close_to_unmerged(tmp_path):
    lora_model().save_pretrained(tmp_path / "lora")
    batch, _ = batch_for(load_nanollava("nanollava-tiny").processor, PROMPTS)
    outs = []
    for merge in (False, True):
        loaded = load_nanollava("nanollava-tiny")
        attached = attach_adapter(loaded.model, str(tmp_path / "lora"), merge_lora=merge)
        with torch.no_grad():
            outs.append(attached.model(**batch).logits)
    assert (outs[0] - outs[1])[batch["attention_mask"].bool()].abs().max() < 1e-4


def test_reft_generation_matches_pyreft_generate(tmp_path):
    """Interventions act on the prompt only; cached decoding then matches pyreft's intervene_on_prompt=True."""
    folder = save_reft(reft_interventions(), tmp_path / "reft")
    rm = pyreft_model(folder)
    loaded = load_nanollava("nanollava-tiny")
    batch, lengths = batch_for(loaded.processor, PROMPTS)
    locations = reference_locations("f3+m3+l3", lengths, batch["input_ids"].shape[1])
    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        _, expected = rm.generate(dict(batch), unit_locations={"sources->base": (None, [locations] * 4)},
                                  intervene_on_prompt=True, **kwargs)
    attached = attach_adapter(loaded.model, str(folder))
    with torch.no_grad(), attached.reft.intervene(batch["attention_mask"], lengths, first_forward_only=True):
        got = attached.model.generate(**batch, **kwargs)
    assert torch.equal(got, expected)
    with torch.no_grad():  # the intervention is not a no-op (greedy tokens may agree; the scores must not)
        bare = attached.model(**batch).logits
        with attached.reft.intervene(batch["attention_mask"], lengths, first_forward_only=True):
            intervened = attached.model(**batch).logits
    assert (bare - intervened).abs().max() > 1e-3


def test_prefix_matches_peft_forward(tmp_path):
    """Our prefix application (a pre-filled cache) gives the logits of peft's own PeftModel forward."""
    from peft import PeftModel

    from vlm_peft_bench.adapters.prefix import PrefixModel, save_prefix

    torch.manual_seed(0)
    loaded = load_nanollava("nanollava-tiny")
    save_prefix(tmp_path / "prefix", PrefixModel(loaded.model, 8))
    reference = PeftModel.from_pretrained(load_nanollava("nanollava-tiny").model, str(tmp_path / "prefix"))
    attached = attach_adapter(load_nanollava("nanollava-tiny").model, str(tmp_path / "prefix"))
    batch, lengths = batch_for(loaded.processor, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        single, _ = batch_for(loaded.processor, [prompt])
        single["pixel_values"] = batch["pixel_values"][i:i + 1]
        with torch.no_grad():
            expected = reference(**single).logits[0]
            alone = attached.prefix.forward(**single).logits[0]
            together = attached.prefix.forward(**batch).logits[i, -lengths[i]:]
            bare = loaded.model(**single).logits[0]
        assert (alone - expected).abs().max() < TOL
        assert (together - expected).abs().max() < 1e-4  # left-padded row
        assert (bare - expected).abs().max() > 1e-2


def test_prefix_generation_is_batch_invariant(tmp_path):
    from vlm_peft_bench.adapters.prefix import PrefixModel, save_prefix

    torch.manual_seed(1)
    loaded = load_nanollava("nanollava-tiny")
    save_prefix(tmp_path / "prefix", PrefixModel(loaded.model, 8))
    attached = attach_adapter(load_nanollava("nanollava-tiny").model, str(tmp_path / "prefix"))
    batch, _ = batch_for(loaded.processor, PROMPTS)
    together = attached.prefix.generate(**batch, max_new_tokens=5)[:, -5:]
    for i, prompt in enumerate(PROMPTS):
        single, _ = batch_for(loaded.processor, [prompt])
        single["pixel_values"] = batch["pixel_values"][i:i + 1]
        assert torch.equal(attached.prefix.generate(**single, max_new_tokens=5)[0, -5:], together[i])
