"""`vlm-peft-bench repr-rank`: how much of the representation space a base (with or without an adapter) uses on
a task's test items, after the PT-PEFT paper (Kim et al., EMNLP Findings 2024: fine-tuning can collapse the
pre-trained representation space; prefix-tuning preserves it).

Representations: the language model's final-layer hidden state (after its final norm, as the LM head reads
it) at the last prompt position of each item, i.e. the state from which the answer's first token is predicted;
prompts are built exactly as `vlreft` builds them for evaluation (task prompt, ChatML template, image tokens),
with the adapter applied as in evaluation (ReFT hooks at the prompt positions, LoRA layers, prefix cache).
`positions="mean"` averages over every prompt token (image tokens included) instead. The spectrum and the
effective rank ratio are defined in `vlm_peft_bench/scoring/spectrum.py`; the leaderboard reads the document
(`vlm_peft_bench/leaderboard/repr_rank.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from vlm_peft_bench.atomic import write_files
from vlm_peft_bench.methods.attach import attach_adapter
from vlm_peft_bench.nanollava.loading import load_nanollava
from vlm_peft_bench.nanollava.provenance import model_provenance
from vlm_peft_bench.paths import display_path
from vlm_peft_bench.provenance import package_versions
from vlm_peft_bench.runner import Runner
from vlm_peft_bench.scoring import spectrum
from vlm_peft_bench.train.data import load_task, task_examples

POSITIONS = {"last": "last prompt token (the state that predicts the answer's first token)",
             "mean": "mean over all prompt tokens, image tokens included"}


@torch.inference_mode()
def final_layer_features(runner, examples, positions: str = "last", batch_size: int = 16) -> np.ndarray:
    """n x d matrix of final-layer representations, one row per example, in the examples' order (through `runner`,
    the code that evaluates: ReFT interventions at their positions, a prefix in front)."""
    rows = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        images = [e.image.convert("RGB") if e.image is not None else None for e in chunk]
        inputs, lengths = runner.inputs([e.text for e in chunk], images)
        hidden = runner.forward(inputs, lengths, output_hidden_states=True).hidden_states[-1].float()
        if positions == "last":  # left padding: the last column is every row's last prompt token
            rows.append(hidden[:, -1, :])
        else:
            mask = inputs["attention_mask"][:, -hidden.shape[1]:].unsqueeze(-1).float()
            rows.append((hidden * mask).sum(1) / mask.sum(1))
    return torch.cat(rows).cpu().numpy().astype(np.float64)


def repr_rank(base: str, task: str, adapter: str | None = None, limit: int | None = None, positions: str = "last",
              device: str | None = None, batch_size: int = 16) -> dict:
    """Run the model over the task's test items and return the repr-rank document (JSON-ready)."""
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
    runner = Runner(model, loaded.processor, torch.device(device), attached)
    features = final_layer_features(runner, examples, positions, batch_size)
    values = spectrum.singular_values(features)
    curve = spectrum.cumulative(values)
    k = spectrum.effective_rank(values)
    provenance = model_provenance(base)
    return {
        "schema": spectrum.DOCUMENT_SCHEMA, "schema_version": spectrum.DOCUMENT_VERSION,
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
    """Write the document as JSON (atomically: an interrupted write leaves any earlier file whole)."""
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / default_name(document)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_files(out.parent, {out.name: text.encode()})
    return out
