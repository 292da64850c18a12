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
