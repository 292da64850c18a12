"""The model's part of a result's provenance: where the model came from, its files' hashes, the prompt template
and the versions (the hashing itself, and the block's schema version, are in `vlm_peft_bench.provenance`)."""

from __future__ import annotations

from vlm_peft_bench.nanollava.loading import resolve_pretrained
from vlm_peft_bench.nanollava.processing import chatml_prompt
from vlm_peft_bench.provenance import combined_hash, folder_hashes, package_versions


def model_provenance(pretrained: str, system_prompt: str | None = None) -> dict:
    """Provenance of a `vlreft` run's model: where it came from, file hashes, prompt template, versions."""
    folder = resolve_pretrained(pretrained)
    hashes = folder_hashes(folder)
    return {
        "pretrained": pretrained,
        "model_folder": str(folder),
        "model_files_sha256": hashes,
        "model_hash": combined_hash(hashes),
        "prompt_template": chatml_prompt("{prompt}", system_prompt),
        "versions": package_versions(),
    }
