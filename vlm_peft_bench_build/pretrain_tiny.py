"""Pre-train `nanollava-tiny` on synthetic grounding data, so that adapters have visual features to build on.

A model with random weights cannot show differences between fine-tuning methods. This script trains every
weight of the tiny model (from the seeded initialisation of `vlm_peft_bench_build/tiny.py`) on open-ended
questions about procedurally drawn scenes (`vlm_peft_bench_build.synthetic.pretrain_scenes`): captions,
counting, colours, shapes, left/right/above/below, nearer/farther, what is in a coloured box, plus lettered
multiple-choice versions of the colour, shape and box questions (so that the base knows the format). It never
sees CV-Bench's question templates, nor its four kinds of question as multiple choice.

    python -m vlm_peft_bench_build.pretrain_tiny --device cuda --steps 12000 --max-minutes 5.5 \
        --lr 7e-4 --warmup 300 --batch-size 256 --scenes 200000 --seed 0 --workers 14 --eval-every 2500 --out DIR

(the settings of the committed weights: the time limit cut the schedule to 8,305 steps, 294 s of training on
one H200, bf16 autocast; `--steps 8305` without `--max-minutes` gives the same schedule). It writes
DIR/model.safetensors (plus config and tokenizer) and DIR/pretrain.json (settings, losses, held-out accuracy
per question type, zero-shot cvbench_mini scores, time, device); copy model.safetensors and pretrain.json into
`vlm_peft_bench/assets/nanollava-tiny/`. On a 2-core CPU it would take about 7 hours (0.25 s per step at batch
32). Given the same seed, steps and hardware the result is the same up to GPU non-determinism. A peak learning
rate of 2e-3 diverged (loss NaN after about 2,000 steps); 7e-4 did not.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from safetensors.torch import save_model
from transformers import LlavaForConditionalGeneration

from vlm_peft_bench.nanollava.config import IMAGE_MEAN, IMAGE_STD
from vlm_peft_bench.nanollava.loading import TINY_DIR, load_nanollava
from vlm_peft_bench.nanollava.processing import chatml_prompt
from vlm_peft_bench.paths import tasks_dir
from vlm_peft_bench.scoring import cvbench_scores, extract_choice
from vlm_peft_bench.scoring.cvbench import POST_PROMPT
from vlm_peft_bench_build.synthetic.pretrain_scenes import multiple_choice, scene_examples

IGNORE = -100


def _render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[list[tuple[str, str]]]]:
    seed, count, size = args
    rng, mc_rng = random.Random(seed), random.Random(seed + 7919)
    pixels = np.empty((count, size, size, 3), dtype=np.uint8)
    qas = []
    for i in range(count):
        img, qa = scene_examples(rng)
        qa += multiple_choice(mc_rng, qa)
        pixels[i] = np.asarray(img.resize((size, size), Image.BICUBIC))
        qas.append(qa)
    return pixels, qas


def render_scenes(n_scenes: int, seed: int, size: int, workers: int) -> tuple[np.ndarray, list]:
    """`n_scenes` scenes resized to the model's input size (uint8), with their question/answer pairs."""
    chunk = 2000
    jobs = [(seed * 1_000_003 + k, min(chunk, n_scenes - k * chunk), size) for k in range(math.ceil(n_scenes / chunk))]
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_chunk, jobs)
    else:
        parts = [_render_chunk(j) for j in jobs]
    return np.concatenate([p for p, _ in parts]), [qa for _, q in parts for qa in q]


def question_type(question: str) -> str:
    """A short label for the template a question came from (for per-type accuracy)."""
    words = question.split()
    if "Select from the following choices" in question:
        return "MC " + " ".join(words[:3])
    return " ".join(words[:3]) if words[0] in ("Is", "What", "How") else " ".join(words[:2])


class Examples:
    """All (scene, question, answer) examples as padded token tensors with loss only on the answer."""

    def __init__(self, processor, pixels: np.ndarray, qas: list[list[tuple[str, str]]], device: torch.device):
        tok = processor.tokenizer
        end = tok.convert_tokens_to_ids("<|im_end|>")
        questions = sorted({q for qa in qas for q, _ in qa})
        answers = sorted({a for qa in qas for _, a in qa})
        q_ids = dict(zip(questions, processor.encode([chatml_prompt(q) for q in questions])))
        a_ids = dict(zip(answers, tok(answers, add_special_tokens=False)["input_ids"]))
        rows, scene_index, self.types = [], [], []
        for s, qa in enumerate(qas):
            for q, a in qa:
                rows.append((q_ids[q], a_ids[a] + [end]))
                scene_index.append(s)
                self.types.append(question_type(q))
        width = max(len(p) + len(a) for p, a in rows)
        n = len(rows)
        ids = np.full((n, width), tok.pad_token_id, dtype=np.int64)
        labels = np.full((n, width), IGNORE, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        for i, (p, a) in enumerate(rows):
            ids[i, : len(p)] = p
            ids[i, len(p): len(p) + len(a)] = a
            labels[i, len(p): len(p) + len(a)] = a
            lengths[i] = len(p) + len(a)
        self.input_ids, self.labels = torch.from_numpy(ids), torch.from_numpy(labels)
        self.attention = (torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]).long()
        self.scene = torch.tensor(scene_index)
        self.pixels = torch.from_numpy(pixels).to(device)  # uint8, N x H x W x 3
        self.input_ids, self.labels, self.attention, self.scene = (
            t.to(device) for t in (self.input_ids, self.labels, self.attention, self.scene))
        self.mean = torch.tensor(IMAGE_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGE_STD, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, index: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        width = int(self.attention[index].sum(1).max())
        px = self.pixels[self.scene[index]].permute(0, 3, 1, 2).float() / 255.0
        return {
            "input_ids": self.input_ids[index, :width],
            "attention_mask": self.attention[index, :width],
            "labels": self.labels[index, :width],
            "pixel_values": ((px - self.mean) / self.std).to(dtype),
        }


@torch.no_grad()
def answer_accuracy(model, data: Examples, dtype, batch_size: int = 512) -> dict[str, float]:
    """Teacher-forced exact match of every answer token, overall and per question type."""
    model.eval()
    hits: dict[str, list[float]] = defaultdict(list)
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.input_ids.device)
        b = data.batch(index, dtype)
        with torch.autocast(b["input_ids"].device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                           pixel_values=b["pixel_values"]).logits
        pred, target = logits[:, :-1].argmax(-1), b["labels"][:, 1:]
        mask = target != IGNORE
        exact = ((pred == target) | ~mask).all(1).float().tolist()
        for i, ok in zip(index.tolist(), exact):
            hits[data.types[i]].append(ok)
            hits["all"].append(ok)
    model.train()
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


@torch.no_grad()
def cvbench_mini_zero_shot(model, processor, device, batch_size: int = 64) -> dict:
    """Greedy answers of the model on cvbench_mini's test split, scored with our rule and CV-Bench's formula."""
    # pyarrow rather than `datasets`: this also runs on GPU images that have no `datasets`.
    data = pq.read_table(tasks_dir() / "cvbench" / "mini" / "test.parquet").to_pylist()
    model.eval()
    records, examples = [], []
    for start in range(0, len(data), batch_size):
        rows = data[start:start + batch_size]
        images = [Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB") for r in rows]
        batch = processor([r["prompt"] + POST_PROMPT for r in rows], images).to(device)
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        out = model.generate(**batch, max_new_tokens=16, do_sample=False, eos_token_id=processor.tokenizer.eos_token_id,
                             pad_token_id=processor.tokenizer.pad_token_id)
        texts = processor.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for r, t in zip(rows, texts):
            letter = extract_choice(t, r["choices"])
            records.append({"source": r["source"], "task": r["task"], "correct": f"({letter})" == r["answer"]})
            if len(examples) < 12:
                examples.append({"prompt": r["question"], "answer": r["answer"], "response": t})
    model.train()
    return {"scores": cvbench_scores(records), "examples": examples}


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save(model, processor, out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (TINY_DIR / name).exists() and not (out / name).exists():
            shutil.copy(TINY_DIR / name, out / name)
    state_model = model.float() if model.dtype != torch.float32 else model
    save_model(state_model, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "pretrain.json").write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pretrained-tiny"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=4515)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="shorten the schedule to fit this many minutes (speed measured over steps 10-60)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=7e-4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=200_000)
    parser.add_argument("--heldout-scenes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, mp.cpu_count() - 2))
    parser.add_argument("--eval-every", type=int, default=2000)
    args = parser.parse_args()

    t0 = time.time()
    device = torch.device(args.device)
    loaded = load_nanollava("nanollava-tiny", device="cpu", dtype="float32")  # config and tokenizer
    torch.manual_seed(args.seed)  # fresh seeded initialisation, whatever weights the folder holds now
    model = LlavaForConditionalGeneration(loaded.model.config).to(device)
    processor = loaded.processor
    model.train()
    size = model.config.vision_config.image_size
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    pixels, qas = render_scenes(args.scenes, args.seed + 1, size, args.workers)
    train = Examples(processor, pixels, qas, device)
    h_pixels, h_qas = render_scenes(args.heldout_scenes, args.seed + 2, size, 1)
    heldout = Examples(processor, h_pixels, h_qas, device)
    print(f"data: {len(train)} training examples from {args.scenes} scenes, {len(heldout)} held out, "
          f"{time.time() - t0:.0f}s", flush=True)

    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01,
                              fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "device": str(device),
              "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
              "train_examples": len(train), "losses": [], "heldout": []}
    total = args.steps
    t_train = t_calib = time.time()
    step = 0
    while step < total:
        if args.max_minutes and step == 60:  # fit the schedule to the time allowed, from the speed so far
            per_step = (time.time() - t_calib) / 50
            total = min(total, max(step + 1, int(args.max_minutes * 60 * 0.9 / per_step)))
            print(f"{per_step * 1000:.1f} ms/step: training for {total} steps", flush=True)
        if step == 10:
            t_calib = time.time()
        for group in optim.param_groups:
            group["lr"] = lr_at(step, total, args.lr, args.warmup)
        index = torch.randint(0, len(train), (args.batch_size,), device=device, generator=gen)
        batch = train.batch(index, dtype)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; rerun with a lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if step % 500 == 0:
            report["losses"].append({"step": step, "loss": round(loss.item(), 4)})
            print(f"step {step} loss {loss.item():.4f} {time.time() - t_train:.0f}s", flush=True)
        if step and step % args.eval_every == 0:
            acc = answer_accuracy(model, heldout, dtype)
            report["heldout"].append({"step": step, **acc})
            print(f"step {step} held-out exact match {acc['all']:.3f}", flush=True)
            save(model, processor, args.out, {**report, "steps_done": step})
        step += 1
    report["steps_done"] = step
    report["steps_planned"] = total
    report["train_seconds"] = round(time.time() - t_train, 1)
    report["final_heldout"] = answer_accuracy(model, heldout, dtype)
    print(f"held-out: {json.dumps(report['final_heldout'], indent=1)}", flush=True)
    report["cvbench_mini_zero_shot"] = cvbench_mini_zero_shot(model, processor, device)
    print(f"cvbench_mini zero-shot: {report['cvbench_mini_zero_shot']}", flush=True)
    report["total_seconds"] = round(time.time() - t0, 1)
    save(model, processor, args.out, report)
    print(f"wrote {args.out} in {report['total_seconds']}s", flush=True)


if __name__ == "__main__":
    main()
