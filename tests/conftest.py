import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tasks" / "cvbench" / "mini"

# Tests never reach for the network: the Hub is unreachable on our machines and in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny():
    from vlm_peft_bench.nanollava.loading import load_nanollava

    return load_nanollava("nanollava-tiny", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def mini_test():
    from datasets import load_dataset

    return load_dataset("parquet", data_files={"test": str(MINI / "test.parquet")})["test"]


@pytest.fixture(scope="session")
def make_model(mini_test):
    """A factory of `vlreft` models on the CPU, wired to cvbench_mini's test split as lmms-eval wires them."""
    from vlm_peft_bench.lmms.vlreft import VLReft

    def make(**kwargs):
        model = VLReft(pretrained="nanollava-tiny", device="cpu", dtype="float32", **kwargs)
        model.task_dict = {"cvbench_mini": {"test": mini_test}}
        return model

    return make


# Two CPU processes, as docs/scale.md documents them. `accelerate launch --cpu --num_processes 2` starts only ONE
# process (its CPU path is the simple launcher); torchrun starts two and sets RANK / WORLD_SIZE, which lmms-eval
# reads, and ACCELERATE_USE_CPU makes accelerate build a gloo process group from them (DDP training needs it).
def two_process_command(*args: str) -> list[str]:
    """The launcher, then `args`: `-m lmms_eval ...` or a script and its arguments."""
    import sys

    torchrun = str(Path(sys.executable).parent / "torchrun")
    return ["env", "ACCELERATE_USE_CPU=true", torchrun, "--standalone", "--nproc_per_node", "2", *args]
