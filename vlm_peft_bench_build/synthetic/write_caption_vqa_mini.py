"""Write the bundled `coco_captions_mini` and `vqa_v2_mini` data in lmms-lab's exact schemas.

    python -m vlm_peft_bench_build.synthetic.write_caption_vqa_mini

writes tasks/coco_captions/mini/test.parquet (200 images, five references each) and tasks/vqa_v2/mini/test.parquet
(300 questions on 100 images, ten human answers each). Deterministic: the same code writes the same items and
pixels (see `caption_vqa_scenes`, `caption_references`, `vqa_answers`); `--tasks-dir` writes under another folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import Dataset, Features, Image, List, Value

from vlm_peft_bench.paths import project_root
from vlm_peft_bench_build.synthetic.caption_references import generate_captions
from vlm_peft_bench_build.synthetic.cvbench_scenes import png_bytes
from vlm_peft_bench_build.synthetic.vqa_answers import generate_vqa

DEFAULT_TASKS = project_root() / "tasks"  # the checkout's (installed: ./tasks)

# lmms-lab/COCO-Caption2017 (split "val"): one row per image; `answer` holds the reference captions, and
# `question_id` is the image's file name (lmms-eval's own coco utils parse the image id out of it).
COCO_CAPTION_FEATURES = Features({
    "question_id": Value("string"),
    "image": Image(),
    "question": Value("string"),
    "answer": List(Value("string")),
    "id": Value("int64"),
    "license": Value("int8"),
    "file_name": Value("string"),
    "coco_url": Value("string"),
    "height": Value("int32"),
    "width": Value("int32"),
    "date_captured": Value("string"),
})

# lmms-lab/VQAv2 (split "validation"): one row per question, ten human answers as a list of records.
VQA_V2_FEATURES = Features({
    "question_type": Value("string"),
    "multiple_choice_answer": Value("string"),
    "answers": List({"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}),
    "image_id": Value("int64"),
    "answer_type": Value("string"),
    "question_id": Value("int64"),
    "question": Value("string"),
    "image": Image(),
})

OUTPUTS = {  # task folder -> (generator, features)
    "coco_captions": (generate_captions, COCO_CAPTION_FEATURES),
    "vqa_v2": (generate_vqa, VQA_V2_FEATURES),
}


def to_dataset(items: list[dict], features: Features) -> Dataset:
    rows = []
    for item in items:
        row = dict(item)
        row["image"] = {"bytes": png_bytes(item["image"]), "path": None}
        rows.append(row)
    return Dataset.from_list(rows, features=features)


def write(tasks_dir: Path = DEFAULT_TASKS) -> list[Path]:
    written = []
    for folder, (generate, features) in OUTPUTS.items():
        path = tasks_dir / folder / "mini" / "test.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        to_dataset(generate(), features).to_parquet(str(path))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks-dir", type=Path, default=DEFAULT_TASKS)
    args = parser.parse_args()
    for path in write(args.tasks_dir):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
