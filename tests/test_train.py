"""`vlm-peft-bench train` for each implemented method (a few steps on CPU; the zoo holds full runs)."""

import pytest
import torch
from PIL import Image

from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.train.data import split_train_validation
from vlm_peft_bench.train.trainer import train


def logits(adapter=None):
    loaded = load_nanollava("nanollava-tiny")
    batch = loaded.processor(["How many cyan squares are in the image?"], [Image.new("RGB", (64, 64), "cyan")])
    attached = attach_adapter(loaded.model, str(adapter)) if adapter else None
    runner = Runner(attached.model if attached else loaded.model, loaded.processor, torch.device("cpu"), attached)
    with torch.no_grad():
        return runner.logits(batch, [batch["input_ids"].shape[1]])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["reft-r4-all", "lora-r8", "dora-r8", "full-ft", "prefix-16", "pt-lora"])
def test_training_writes_a_working_adapter(tmp_path, recipe):
    card = train(recipe, "cvbench_mini", tmp_path / recipe, limit=12, evaluate_test=False, card_dir=None)
    stages = 2 if recipe == "pt-lora" else 1  # PT-PEFT trains the prefix, then LoRA
    assert card["training"]["steps"] == 12 * stages and card["params"]["trainable"] > 0
    assert card["adapter_hash"] and card["files_sha256"]
    assert (logits(None) - logits(tmp_path / recipe)).abs().max() > 1e-4, "training must change the model"


@pytest.mark.slow
def test_reft_rotation_survives_training(tmp_path):
    """No weight decay on interventions: LoReFT's rotation must stay orthonormal, not collapse to zero."""
    train("reft-r4-all", "cvbench_mini", tmp_path / "r", limit=12, evaluate_test=False, card_dir=None)
    rotation = torch.load(next((tmp_path / "r").glob("intkey_*.bin")), weights_only=True)["rotate_layer"]
    assert torch.allclose(rotation.T @ rotation, torch.eye(rotation.shape[1]), atol=1e-4)


@pytest.mark.slow
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


@pytest.mark.slow
def test_pt_lora_trains_prefix_then_lora_and_saves_both(tmp_path):
    from safetensors.torch import load_file

    from vlm_peft_bench.methods.table import recognise

    card = train("pt-lora", "cvbench_mini", tmp_path / "pt", limit=8, evaluate_test=False, card_dir=None)
    assert card["training"]["steps"] == 16  # 8 prefix steps, then 8 LoRA steps
    assert recognise(tmp_path / "pt").name == "pt-lora"
    prefix = load_file(str(tmp_path / "pt" / "prefix" / "adapter_model.safetensors"))["prompt_embeddings"]
    assert prefix.shape == (16, 4 * 2 * 128)


@pytest.mark.slow
def test_checkpoint_after_each_epoch_but_the_last(tmp_path):
    train("lora-r8", "cvbench_mini", tmp_path / "l", limit=4, evaluate_test=False, card_dir=None,
          overrides={"epochs": 2})
    assert (tmp_path / "l" / "checkpoints" / "epoch-1" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "l" / "checkpoints" / "epoch-2").exists()


def test_out_folder_holding_another_adapter_format_is_refused_before_training(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")  # a peft adapter left from an earlier run
    with pytest.raises(FileExistsError, match="already holds a peft adapter"):
        train("full-ft", "cvbench_mini", out, limit=2, evaluate_test=False, card_dir=None)


@pytest.mark.slow
def test_two_processes_train_with_ddp_each_on_half_the_data(tmp_path):
    """The multi-process form in docs/scale.md (torchrun + ACCELERATE_USE_CPU: gloo on CPUs): each process takes half of
    the items, so a 12-item run takes 6 steps, and the main process saves a working adapter and its card."""
    import os
    import subprocess

    import yaml

    from .conftest import two_process_command

    script = tmp_path / "train_two.py"
    script.write_text(
        "from vlm_peft_bench.train.trainer import train\n"
        f"train('lora-r8', 'cvbench_mini', {str(tmp_path / 'lora')!r}, limit=12, evaluate_test=False, "
        f"card_dir={str(tmp_path / 'cards')!r}, device='cpu')\n")
    command = two_process_command(str(script))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [card_file] = list((tmp_path / "cards").glob("*.yaml"))
    card = yaml.safe_load(card_file.read_text())
    assert card["training"]["steps"] == 6
    assert (logits(None) - logits(tmp_path / "lora")).abs().max() > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["reft-r4-all", "prefix-16", "pt-lora"])
def test_validation_answers_are_what_evaluation_gives_for_the_saved_adapter(tmp_path, recipe):
    """A card's validation scores come from the evaluation's runner: the answers `predict` gives for a training
    stage equal those of the saved adapter loaded as `vlreft` loads it, with the task's generation settings."""
    from vlm_peft_bench.methods.recipe import load_recipe
    from vlm_peft_bench.methods.registry import family
    from vlm_peft_bench.train.data import load_task, task_examples
    from vlm_peft_bench.train.trainer import predict

    task = load_task("cvbench_mini")
    examples = task_examples(task)[:5]
    loaded = load_nanollava("nanollava-tiny")
    torch.manual_seed(0)
    stages = family(load_recipe(recipe).method).prepare(load_recipe(recipe), loaded.model)
    stage = stages[-1] if not callable(stages[-1]) else stages[-1]()
    with torch.no_grad():  # move the trained values well off their start, as training would
        for group in stage.param_groups:
            for p in group["params"]:
                p.add_(0.5 * torch.randn_like(p))
    during_training = predict(stage, loaded.processor, task, examples, "cpu", batch_size=2)
    stage.save(tmp_path / recipe)
    fresh = load_nanollava("nanollava-tiny")
    attached = attach_adapter(fresh.model, str(tmp_path / recipe))
    runner = Runner(attached.model, fresh.processor, torch.device("cpu"), attached)
    inputs, lengths = runner.inputs([e.text for e in examples], [e.image for e in examples])
    evaluated = runner.generate(inputs, lengths, {"max_new_tokens": 16, "temperature": 0}, ["<|im_end|>"])
    assert during_training == evaluated
