"""In-context vectors: the vector against an independent computation (states read by hooks of ours, one
demonstration at a time; the PCA through numpy's eigendecomposition), the edit against a transcription of the
authors' ICVLayer, and vlreft applying it at every layer's MLP output, at every prompt and generated position."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.reft_folder import language_model
from vlm_peft_bench.adapters.steering import IcvIntervention
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.methods.table import recognise
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.shared_prefix import PromptRequest
from vlm_peft_bench.steering.icv import demonstrations, derive_icv, leading_direction

from .adapter_factory import HIDDEN
from .test_shared_prefix import answers

K = 6


def authors_icv_layer(x: torch.Tensor, icv: torch.Tensor, lam: float) -> torch.Tensor:
    """The authors' ICVLayer.forward (utils/llm_layers.py) for one vector, written out as they write it."""
    x = x.float()
    original_norm = torch.norm(x, p=2, dim=-1, keepdim=True)
    lambda_sim = 1.0 + torch.max(torch.tensor([0.0]), torch.nn.functional.cosine_similarity(
        x, -icv[None, None, :], dim=-1)).unsqueeze(-1)
    y = lam * lambda_sim * torch.nn.functional.normalize(icv, dim=-1).repeat(1, x.shape[1], 1)
    return torch.nn.functional.normalize(torch.nn.functional.normalize(x, p=2, dim=-1) + y, p=2, dim=-1) * original_norm


def test_the_edit_is_the_authors_icv_layer():
    torch.manual_seed(0)
    x, v = torch.randn(1, 7, HIDDEN) * 3, torch.randn(HIDDEN)
    module = IcvIntervention(HIDDEN, v, scale=0.3)
    assert torch.allclose(module(x), authors_icv_layer(x, v, 0.3), atol=1e-6)
    assert torch.allclose(module(x).norm(dim=-1), x.norm(dim=-1), atol=1e-4)  # the norm is kept


def numpy_direction(differences: np.ndarray) -> np.ndarray:
    """First principal direction by the covariance's eigendecomposition, sign by the largest projection (what
    svd_flip makes positive), plus the mean."""
    mean = differences.mean(0)
    centred = differences - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)
    v = vectors[:, -1]
    scores = centred @ v
    return v * np.sign(scores[np.abs(scores).argmax()]) + mean


def test_leading_direction_matches_an_eigendecomposition():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(9, 5)) + np.outer(rng.normal(size=9), [3, 0, 1, 0, 0])
    assert np.allclose(leading_direction(torch.tensor(data)).numpy(), numpy_direction(data), atol=1e-5)


def last_token_outputs(model, processor, text, image, answer=None) -> torch.Tensor:
    """[layers, hidden]: every layer's output at the last token, by forward hooks on the bare model's layers."""
    ids = processor.encode([processor.prompt(text, image is not None)])[0]
    if answer is not None:
        ids = ids + processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    batch = processor.pad_left([ids])
    batch["pixel_values"] = processor.pixel_values([image])
    outputs = []
    handles = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(
        (out[0] if isinstance(out, tuple) else out)[0, -1].clone())) for layer in language_model(model).layers]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(outputs)


@pytest.fixture(scope="module")
def icv_folder(tmp_path_factory):
    return derive_icv("nanollava-tiny", "cvbench_mini", tmp_path_factory.mktemp("icv") / "icv", k=K, lam=0.2,
                      seed=3, batch_size=4)


def test_the_vector_matches_an_independent_computation(icv_folder):
    prompts, answers, indices, _ = demonstrations("cvbench_mini", K, 3)
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    diffs = [last_token_outputs(loaded.model, loaded.processor, p.text, p.image, a)
             - last_token_outputs(loaded.model, loaded.processor, p.text, p.image) for p, a in zip(prompts, answers)]
    expected = numpy_direction(torch.stack(diffs).reshape(K, -1).double().numpy()).reshape(-1, HIDDEN)
    record = json.loads((icv_folder / "steering.json").read_text())
    assert record["kind"] == "icv" and record["k"] == K and record["data"]["demonstrations"] == indices
    assert json.loads((icv_folder / "vlm_peft_bench.json").read_text()) == {
        "positions": "all", "share_weights": True, "intervene_on": "all"}
    config = json.loads((icv_folder / "config.json").read_text())
    for layer in range(4):
        (key,) = [k for k in config["sorted_keys"] if f"layers[{layer}]_mlp_output" in k]
        saved = torch.load(icv_folder / f"intkey_{key}.bin", weights_only=True)["source_representation"]
        assert np.allclose(saved.numpy(), expected[layer], atol=1e-4), layer
    assert recognise(icv_folder).name == "icv"


def test_vlreft_applies_it_at_every_mlp_output_and_position(icv_folder):
    loaded = load_nanollava("nanollava-tiny", "cpu", "float32")
    runner = Runner(loaded.model, loaded.processor, torch.device("cpu"))
    images = [Image.new("RGB", (64, 64), "green"), Image.new("RGB", (70, 64), "red")]
    batch, lengths = runner.inputs(["How many squares?", "Which object is closer?"], images)
    config = json.loads((icv_folder / "config.json").read_text())
    vectors = [torch.load(icv_folder / f"intkey_{k}.bin", weights_only=True)["source_representation"]
               for k in config["sorted_keys"]]
    layers = language_model(loaded.model).layers
    handles = [layers[i].mlp.register_forward_hook(lambda _m, _i, out, v=v: authors_icv_layer(out, v, 0.5))
               for i, v in enumerate(vectors)]
    try:
        with torch.no_grad():
            expected = loaded.model(**batch).logits
    finally:
        for h in handles:
            h.remove()
    attached = attach_adapter(loaded.model, str(icv_folder), strength=0.5)  # lambda 0.5 instead of the saved 0.2
    steered = Runner(attached.model, loaded.processor, torch.device("cpu"), attached)
    with torch.no_grad():
        got = steered.forward(batch, lengths).logits
    rows_real = batch["attention_mask"].bool()  # padding positions are edited too by the authors' hook: compare
    assert torch.allclose(got[rows_real], expected[rows_real], atol=1e-4)  # the real tokens
    requests = [PromptRequest(q, images[0]) for q in ("What colour is it?", "How many are there?")]
    gen = {"max_new_tokens": 5, "temperature": 0, "until": []}
    assert answers(steered, requests, gen, 2, True) == answers(steered, requests, gen, 2, False)


def test_too_few_demonstrations_are_refused(tmp_path):
    with pytest.raises(AdapterError, match="--k 1: the PCA needs at least 2 demonstrations"):
        derive_icv("nanollava-tiny", "cvbench_mini", tmp_path / "x", k=1)
    with pytest.raises(AdapterError, match="lambda=0"):
        derive_icv("nanollava-tiny", "cvbench_mini", tmp_path / "x", lam=0)
