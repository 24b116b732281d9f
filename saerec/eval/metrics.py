"""Ranking metrics for one held-out item per user (binary relevance, as RePlay computes them).

NDCG@K = 1 / log2(rank + 2) if the target is in the top K (0-based rank), else 0; the ideal DCG
is 1 because there is one relevant item. HitRate@K: target in top K. MRR@K: 1 / (rank + 1).
Coverage@K: distinct recommended items / items in train.
"""

from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its top-K row, or -1 when absent."""
    hit = topk == np.asarray(targets)[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


def ranking_metrics(topk: np.ndarray, targets: np.ndarray, n_catalog: int, k: int = 10) -> dict[str, float]:
    topk = np.asarray(topk)[:, :k]
    rank = target_ranks(topk, targets)
    hit = rank >= 0
    ndcg = np.where(hit, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
    mrr = np.where(hit, 1.0 / (np.maximum(rank, 0) + 1.0), 0.0)
    return {
        f"ndcg@{k}": float(ndcg.mean()) if len(ndcg) else 0.0,
        f"hit_rate@{k}": float(hit.mean()) if len(hit) else 0.0,
        f"mrr@{k}": float(mrr.mean()) if len(mrr) else 0.0,
        f"coverage@{k}": float(len(np.unique(topk)) / max(n_catalog, 1)),
        "users": int(len(targets)),
    }
