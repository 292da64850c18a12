"""`vlm-peft-bench repr-rank`: how much of the representation space a base (with or without an adapter) uses on
a task's test items, after the PT-PEFT paper (Kim et al., EMNLP Findings 2024: fine-tuning can collapse the
pre-trained representation space; prefix-tuning preserves it).

Representations: the language model's final-layer hidden state (after its final norm, as the LM head reads
it) at the last prompt position of each item, i.e. the state from which the answer's first token is predicted;
prompts are built exactly as `vlreft` builds them for evaluation (task prompt, ChatML template, image tokens),
with the adapter applied as in evaluation (ReFT hooks at the prompt positions, LoRA layers, prefix cache).
`positions="mean"` averages over every prompt token (image tokens included) instead. The spectrum and the
effective rank ratio are defined in `spectrum.py`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from vlm_peft_bench.leaderboard import spectrum

SCHEMA_ID = "vlm-peft-bench/repr-rank"
SCHEMA_VERSION = "1.0"
POSITIONS = {"last": "last prompt token (the state that predicts the answer's first token)",
             "mean": "mean over all prompt tokens, image tokens included"}


@torch.inference_mode()
def final_layer_features(model, processor, adapter, examples, device, positions: str = "last",
                         batch_size: int = 16) -> np.ndarray:
    """n x d matrix of final-layer representations, one row per example, in the examples' order."""
    rows = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        prompts = [processor.prompt(e.text, e.image is not None) for e in chunk]
        encoded = processor.encode(prompts)
        inputs = processor.pad_left(encoded)
        images = [e.image.convert("RGB") for e in chunk if e.image is not None]
        if images:
            inputs["pixel_values"] = processor.pixel_values(images).to(next(model.parameters()).dtype)
        inputs = inputs.to(device)
        hooks = contextlib.nullcontext()
        if adapter is not None and adapter.reft is not None:
            hooks = adapter.reft.intervene(inputs["attention_mask"], [len(ids) for ids in encoded], False)
        forward = adapter.prefix.forward if adapter is not None and adapter.prefix is not None else model
        with hooks:
            hidden = forward(**inputs, output_hidden_states=True).hidden_states[-1].float()
        if positions == "last":  # left padding: the last column is every row's last prompt token
            rows.append(hidden[:, -1, :])
        else:
            mask = inputs["attention_mask"][:, -hidden.shape[1]:].unsqueeze(-1).float()
            rows.append((hidden * mask).sum(1) / mask.sum(1))
    return torch.cat(rows).cpu().numpy().astype(np.float64)


def repr_rank(base: str, task: str, adapter: str | None = None, limit: int | None = None, positions: str = "last",
              device: str | None = None, batch_size: int = 16) -> dict:
    """Run the model over the task's test items and return the repr-rank document (JSON-ready)."""
    from vlm_peft_bench.adapters.loader import attach_adapter
    from vlm_peft_bench.nanollava.loading import load_nanollava
    from vlm_peft_bench.provenance import model_provenance, package_versions
    from vlm_peft_bench.train.data import load_task, task_examples

    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {sorted(POSITIONS)}, got {positions!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_nanollava(base, device=device, dtype="float32")
    attached = attach_adapter(loaded.model, adapter) if adapter else None
    model = attached.model if attached else loaded.model
    model.eval()
    lmms_task = load_task(task)
    split = lmms_task.config.test_split
    examples = task_examples(lmms_task, split)
    if limit:
        examples = examples[:limit]
    features = final_layer_features(model, loaded.processor, attached, examples, device, positions, batch_size)
    values = spectrum.singular_values(features)
    curve = spectrum.cumulative(values)
    k = spectrum.effective_rank(values)
    provenance = model_provenance(base)
    from vlm_peft_bench.leaderboard.results import display_path

    return {
        "schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION,
        "base": {"name": base, "hash": provenance["model_hash"]},
        "adapter": None if attached is None else {"path": display_path(Path(adapter)), "sha256": attached.sha256,
                                                  "kind": attached.kind},
        "task": task, "split": split, "n": int(features.shape[0]), "limit": limit,
        "positions": positions, "positions_meaning": POSITIONS[positions],
        "layer": "language model's final hidden state, after its final norm",
        "hidden_size": int(features.shape[1]), "threshold": spectrum.THRESHOLD, "definition": spectrum.DEFINITION,
        "effective_rank": k, "effective_rank_ratio": round(k / features.shape[1], 6),
        "singular_values": [float(f"{v:.6g}") for v in values],
        "cumulative": [round(float(c), 6) for c in curve],
        "prompt_template": provenance["prompt_template"], "versions": package_versions(),
        "command": "vlm-peft-bench repr-rank --base " + base + (f" --adapter {display_path(Path(adapter))}"
                                                                 if adapter else "")
                   + f" --task {task}" + (f" --limit {limit}" if limit else "")
                   + (f" --positions {positions}" if positions != "last" else ""),
    }


def default_name(document: dict) -> str:
    adapter = Path(document["adapter"]["path"]).name if document["adapter"] else "base"
    return f"repr_rank__{Path(document['base']['name']).name}__{adapter}__{document['task']}.json"


def write(document: dict, out: Path) -> Path:
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / default_name(document)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out


def read_repr_files(dirs: list[Path]) -> list[dict]:
    """Every repr-rank document under the results folders (files whose `schema` says so)."""
    from vlm_peft_bench.leaderboard.results import display_path

    docs = []
    for d in dirs:
        for path in sorted(Path(d).rglob("repr_rank*.json")) if Path(d).is_dir() else []:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and data.get("schema") == SCHEMA_ID:
                docs.append({**data, "_file": display_path(path)})
    return docs
