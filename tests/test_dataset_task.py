"""Task data: local overrides, quick offline failure, undecodable images stopped before any model work."""

import io

import pytest
from datasets import Dataset
from lmms_eval.tasks import TaskManager, get_task_dict
from PIL import Image

from vlm_peft_bench.lmms.dataset_task import DatasetError
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench_build.synthetic.write_cvbench_mini import CVBENCH_FEATURES

from .conftest import MINI


def load(names, extra_paths=()):
    manager = TaskManager("ERROR", include_path=[str(tasks_dir()), *map(str, extra_paths)])
    return get_task_dict(names, manager)


def test_mini_task_loads_bundled_data():
    task = load(["cvbench_mini"])["cvbench_mini"]
    assert len(task.test_docs()) == 800
    assert len(task.training_docs()) == 4000


def test_real_task_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VLM_PEFT_BENCH_CVBENCH", raising=False)
    with pytest.raises(DatasetError, match="not in the local cache.*VLM_PEFT_BENCH_CVBENCH"):
        load(["cvbench"])


def test_real_task_reads_a_local_copy(monkeypatch):
    monkeypatch.setenv("VLM_PEFT_BENCH_CVBENCH", str(MINI / "test.parquet"))
    task = load(["cvbench"])["cvbench"]
    assert len(task.test_docs()) == 800


def test_local_copy_that_does_not_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("VLM_PEFT_BENCH_CVBENCH", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="VLM_PEFT_BENCH_CVBENCH=.*does not exist"):
        load(["cvbench"])


def test_corrupt_image_row_is_named(tmp_path):
    rows = Dataset.from_parquet(str(MINI / "test.parquet")).select(range(6)).to_list()
    good = io.BytesIO()
    Image.new("RGB", (8, 8)).save(good, format="PNG")
    rows[4]["image"] = {"bytes": good.getvalue()[:20], "path": None}  # truncated PNG
    Dataset.from_list(rows, features=CVBENCH_FEATURES).to_parquet(str(tmp_path / "test.parquet"))
    template = tasks_dir() / "cvbench" / "_cvbench_template_yaml"
    (tmp_path / "broken.yaml").write_text(
        f"task: cvbench_broken\ninclude: {template}\ndataset_path: parquet\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'test.parquet'}\ntest_split: test\n"
        "metadata:\n  image_column: image\n"
    )
    task = load(["cvbench_broken"], [tmp_path])["cvbench_broken"]
    task.build_all_requests(limit=4)  # only the evaluated rows are checked: 0-3 are fine
    with pytest.raises(DatasetError, match="split test row 4 .*cannot be decoded.*remove that row"):
        task.build_all_requests(limit=None)
    with pytest.raises(DatasetError, match="row 4 "):
        task.build_all_requests(limit=None, rank=0, world_size=2)  # this process's share: rows 0, 2, 4
