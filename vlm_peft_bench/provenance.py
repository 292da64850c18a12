"""What travels with every result: exact versions and file hashes (the model's part, with its prompt template, is
`vlm_peft_bench.nanollava.provenance`). Plain utilities: this module imports nothing of the project."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

# Layout of the vlm_peft_bench block in results files; bump when a reader must know. The leaderboard reads
# it from here (leaderboard/layout.py), so this module imports nothing heavy.
SCHEMA_VERSION = 1
PACKAGES = ("vlm-peft-bench", "lmms-eval", "torch", "transformers", "peft", "pyreft", "pyvene", "accelerate",
            "datasets", "tokenizers", "pillow")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of the files that define a model: config, tokenizer and weights."""
    names = [n for n in MODEL_FILES if (folder / n).is_file()]
    names += sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    return {name: file_sha256(folder / name) for name in names}


def combined_hash(hashes: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
