"""Singular-value spectrum of a representation matrix and its effective rank ratio (PT-PEFT's measure).

Definition used throughout: X is the n x d matrix of representations (one row per evaluated item, not
centred); s_1 >= ... >= s_m are its singular values, padded with zeros to d; the cumulative curve is
c_k = (s_1 + ... + s_k) / (s_1 + ... + s_d) (singular values themselves, not their squares); the effective rank
is the smallest k with c_k >= 0.9, and the effective rank ratio is k / d. A collapsed representation space (a
few directions carry everything) has a small ratio.

Also here, below both, the identity of the repr-rank document: `vlm-peft-bench repr-rank` writes it
(`vlm_peft_bench/measure/repr_rank.py`) and the leaderboard reads it (`vlm_peft_bench/leaderboard/repr_rank.py`).
"""

from __future__ import annotations

import numpy as np

DOCUMENT_SCHEMA = "vlm-peft-bench/repr-rank"
DOCUMENT_VERSION = "1.0"
THRESHOLD = 0.9
DEFINITION = ("effective rank ratio = k / d, k = the smallest number of singular values whose sum reaches 90% "
              "of the sum of all d singular values of the uncentred n x d matrix of final-layer representations "
              "(singular values, not squared)")


def singular_values(features: np.ndarray) -> np.ndarray:
    """Singular values of an n x d matrix, in float64, descending, padded with zeros to length d."""
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected a non-empty n x d matrix, got shape {matrix.shape}")
    values = np.linalg.svd(matrix, compute_uv=False)
    return np.concatenate([values, np.zeros(matrix.shape[1] - values.size)])


def cumulative(values: np.ndarray) -> np.ndarray:
    """c_k = sum of the k largest singular values / sum of all of them (all zeros for a zero matrix)."""
    values = np.asarray(values, dtype=np.float64)
    total = values.sum()
    return np.cumsum(values) / total if total > 0 else np.zeros_like(values)


def effective_rank(values: np.ndarray, threshold: float = THRESHOLD) -> int:
    """The smallest k whose cumulative share reaches `threshold` (0 for a zero matrix)."""
    curve = cumulative(values)
    if not curve.size or curve[-1] == 0:
        return 0
    return int(np.searchsorted(curve, threshold - 1e-12) + 1)


def effective_rank_ratio(values: np.ndarray, threshold: float = THRESHOLD) -> float:
    return effective_rank(values, threshold) / len(values)
