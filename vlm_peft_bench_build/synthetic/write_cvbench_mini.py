"""Write the bundled `cvbench_mini` data: train and test parquet files in CV-Bench's exact schema.

    python -m vlm_peft_bench_build.synthetic.write_cvbench_mini --out tasks/cvbench/mini

Deterministic: the same code writes the same items and pixels (see `cvbench_scenes`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import Dataset, Features, Image, Sequence, Value

from vlm_peft_bench.paths import project_root
from vlm_peft_bench_build.synthetic.cvbench_scenes import SPLIT_SIZES, generate_split, png_bytes

DEFAULT_OUT = project_root() / "tasks" / "cvbench" / "mini"  # the checkout's (installed: ./tasks/...)

CVBENCH_FEATURES = Features({
    "idx": Value("int32"),
    "type": Value("string"),
    "task": Value("string"),
    "image": Image(),
    "question": Value("string"),
    "choices": Sequence(Value("string")),
    "answer": Value("string"),
    "prompt": Value("string"),
    "filename": Value("string"),
    "source": Value("string"),
    "source_dataset": Value("string"),
    "source_filename": Value("string"),
    "target_class": Value("string"),
    "target_size": Value("int64"),
    "bbox": Sequence(Sequence(Value("float64"))),
})


def split_dataset(split: str) -> Dataset:
    rows = []
    for item in generate_split(split):
        row = dict(item)
        row["image"] = {"bytes": png_bytes(item["image"]), "path": None}
        rows.append(row)
    return Dataset.from_list(rows, features=CVBENCH_FEATURES)


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in SPLIT_SIZES:
        path = out / f"{split}.parquet"
        split_dataset(split).to_parquet(str(path))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for path in write(args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
