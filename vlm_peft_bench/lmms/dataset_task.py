"""An lmms-eval task class that loads data predictably: local override first, fast offline failure, image checks.

Our task YAMLs name it with `class: !function utils.DatasetTask`. It adds three things to lmms-eval's
`ConfigurableTask`, configured under the YAML's `metadata`:

* `data_env`: an environment variable that, when set, points the task at a local copy of its dataset (a folder
  downloaded with `huggingface-cli download <id> --repo-type dataset --local-dir DIR`, a folder written by
  `datasets.save_to_disk`, or one parquet file). The Hub is then never contacted.
* A Hub dataset that is not in the local cache while the Hub is unreachable fails at once with what to do,
  instead of lmms-eval's retries.
* `image_column`: every image this run will evaluate (the split's rows within `--limit`/`--offset`, this
  process's share of them) is decoded once before any model work, and a row that cannot be decoded stops the
  run within seconds, naming the row and the fix. Only the evaluated rows, so that `--limit 50` on VQAv2's
  214,354 questions does not first spend a quarter of an hour decoding all of them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import datasets
from lmms_eval.api.task import ConfigurableTask
from PIL import Image

from vlm_peft_bench.errors import VlmPeftBenchError
from vlm_peft_bench.nanollava.loading import hub_offline

LOCAL_BUILDERS = {"parquet", "json", "csv", "arrow", "text", "pandas", "imagefolder"}


class DatasetError(VlmPeftBenchError, ValueError):
    """A task's data cannot be loaded or contains unusable rows."""


def _meta(config) -> dict:
    return config.metadata if isinstance(config.metadata, dict) else {}


class DatasetTask(ConfigurableTask):
    def __init__(self, config: dict | None = None, **kwargs) -> None:
        # lmms-eval hands a class task its whole YAML, including the `class` key TaskConfig does not accept.
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs: dict | None = None) -> None:
        meta = _meta(self.config)
        name = self.config.task
        env = meta.get("data_env")
        local = os.environ.get(env) if env else None
        if local:
            dataset_kwargs = self._use_local_copy(Path(local).expanduser(), env, dataset_kwargs)
        elif self.DATASET_PATH not in LOCAL_BUILDERS and not Path(str(self.DATASET_PATH)).exists():
            self._check_hub_dataset(name, env)
        undecorated = getattr(ConfigurableTask.download, "__wrapped__", ConfigurableTask.download)
        try:
            undecorated(self, dataset_kwargs)
        except DatasetError:
            raise
        except Exception as err:
            what = f"{type(err).__name__}: {err}"
            raise DatasetError(f"task {name}: loading {self.DATASET_PATH!r} failed: {what}") from err

    def build_all_requests(self, *, limit: int | None = None, offset: int = 0, rank: int = 0, world_size: int = 1,
                           **kwargs) -> None:
        column = _meta(self.config).get("image_column")
        if column:
            split = self.config.test_split if self.has_test_docs() else self.config.validation_split
            data = self.dataset[split]
            # the rows lmms-eval's create_iterator hands this process: offset, then every world_size-th
            stop = len(data) if limit is None else min(len(data), int(offset) + int(limit))
            check_images(data, column, self.config.task, split, range(int(offset) + rank, stop, world_size))
        super().build_all_requests(limit=limit, offset=offset, rank=rank, world_size=world_size, **kwargs)

    def _use_local_copy(self, path: Path, env: str, dataset_kwargs: dict | None) -> dict:
        if not path.exists():
            raise DatasetError(f"{env}={path} does not exist: point it at a local copy of the dataset")
        kwargs = {k: v for k, v in (dataset_kwargs or {}).items() if k not in ("data_files", "load_from_disk")}
        if path.is_file():
            self.DATASET_PATH = "parquet"
            self.DATASET_NAME = None
            kwargs["data_files"] = {self.config.test_split: str(path)}
        elif (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            self.DATASET_PATH = str(path)
            kwargs["load_from_disk"] = True
        else:
            self.DATASET_PATH = str(path)
        return kwargs

    def _check_hub_dataset(self, name: str, env: str | None) -> None:
        if not hub_offline():
            return
        datasets.config.HF_HUB_OFFLINE = True  # use the local cache only; never wait on the network
        try:
            datasets.load_dataset_builder(self.DATASET_PATH, self.DATASET_NAME)
        except Exception as err:
            hint = f" or set {env}=/path/to/local/copy" if env else ""
            raise DatasetError(
                f"task {name}: dataset {self.DATASET_PATH!r} is not in the local cache and the Hugging Face Hub "
                f"is unreachable. Download it on a connected machine (`huggingface-cli download "
                f"{self.DATASET_PATH} --repo-type dataset --local-dir DIR`){hint}. ({type(err).__name__})"
            ) from err


def check_images(dataset: datasets.Dataset, column: str, task: str, split: str, rows: range | None = None) -> None:
    """Decode the images of `column` in `rows` (default all) once; the first undecodable row stops the run with a
    clear error."""
    if column not in dataset.column_names:
        raise DatasetError(f"task {task}: split {split} has no column {column!r} (columns: {dataset.column_names})")
    rows = range(len(dataset)) if rows is None else rows
    raw = dataset.cast_column(column, datasets.Image(decode=False)).select(rows)
    for row, value in zip(rows, raw[column]):
        data = (value or {}).get("bytes")
        source = (value or {}).get("path")
        try:
            if data is None and source is None:
                raise ValueError("no image bytes or path")
            with Image.open(io.BytesIO(data) if data is not None else source) as img:
                img.load()
        except Exception as err:
            raise DatasetError(
                f"task {task}: split {split} row {row} ({source or 'embedded bytes'}): the image in column "
                f"{column!r} cannot be decoded ({type(err).__name__}: {err}). Re-download the dataset, or repair "
                "or remove that row."
            ) from err
