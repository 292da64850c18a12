"""`vlm-peft-bench train` for each implemented method (a few steps on CPU; the zoo holds full runs)."""

import pytest
import torch
from PIL import Image

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.loader import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.train.data import split_train_validation
from vlm_peft_bench.train.trainer import train


def logits(adapter=None):
    loaded = load_nanollava("nanollava-tiny")
    batch = loaded.processor(["How many cyan squares are in the image?"], [Image.new("RGB", (64, 64), "cyan")])
    attached = attach_adapter(loaded.model, str(adapter)) if adapter else None
    model = attached.model if attached else loaded.model
    lengths = [batch["input_ids"].shape[1]]
    with torch.no_grad():
        if attached and attached.reft:
            with attached.reft.intervene(batch["attention_mask"], lengths, False):
                return model(**batch).logits
        return model(**batch).logits


@pytest.mark.parametrize("recipe", ["reft-r4-all", "lora-r8", "full-ft"])
def test_training_writes_a_working_adapter(tmp_path, recipe):
    card = train(recipe, "cvbench_mini", tmp_path / recipe, limit=12, evaluate_test=False, card_dir=None)
    assert card["training"]["steps"] == 12 and card["params"]["trainable"] > 0
    assert card["adapter_hash"] and card["files_sha256"]
    assert (logits(None) - logits(tmp_path / recipe)).abs().max() > 1e-4, "training must change the model"


def test_reft_rotation_survives_training(tmp_path):
    """No weight decay on interventions: LoReFT's rotation must stay orthonormal, not collapse to zero."""
    train("reft-r4-all", "cvbench_mini", tmp_path / "r", limit=12, evaluate_test=False, card_dir=None)
    rotation = torch.load(next((tmp_path / "r").glob("intkey_*.bin")), weights_only=True)["rotate_layer"]
    assert torch.allclose(rotation.T @ rotation, torch.eye(rotation.shape[1]), atol=1e-4)


def test_rank_and_layer_overrides(tmp_path):
    card = train("reft-r4-all", "cvbench_mini", tmp_path / "r", limit=4, evaluate_test=False, card_dir=None,
                 overrides={"rank": 6, "layers": "last:2"})
    assert card["params"]["trainable"] == 2 * (128 * 6 + 6 * 128 + 6)
    assert card["id"].startswith("reft-r4-all-layerslast:2-rank6")


def test_split_is_80_20_and_seeded():
    items = list(range(100))
    train_a, val_a = split_train_validation(items, seed=3)
    train_b, val_b = split_train_validation(items, seed=3)
    assert (len(train_a), len(val_a)) == (80, 20) and train_a == train_b and not set(train_a) & set(val_a)


def test_unimplemented_method_says_so(tmp_path):
    with pytest.raises(AdapterError, match="not implemented yet"):
        train("prefix-16", "cvbench_mini", tmp_path / "p", limit=2, evaluate_test=False, card_dir=None)


def test_training_on_two_processes(tmp_path):
    """`accelerate launch` with two CPU processes (gloo DDP) trains one adapter from two data shards."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vlm_peft_bench.cli",
              "train", "--recipe", "reft-r4-all", "--task", "cvbench_mini", "--limit", "16", "--no-test", "--no-card",
              "--out", str(tmp_path / "r")]
    proc = subprocess.run(launch, capture_output=True, text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("validation") == 1  # only the main process reports
    assert (logits(None) - logits(tmp_path / "r")).abs().max() > 1e-4
