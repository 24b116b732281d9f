"""Ranking metrics for one held-out item per user (binary relevance, as RePlay computes them).

NDCG@K = 1 / log2(rank + 2) if the target is in the top K (0-based rank), else 0; the ideal DCG
is 1 because there is one relevant item. HitRate@K: target in top K. MRR@K: 1 / (rank + 1).
Coverage@K: distinct recommended items / items in train. Inter-list diversity and attribute shares
describe a set of lists (steering evaluation, paper Section 8.2).
"""

from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its top-K row, or -1 when absent."""
    hit = topk == np.asarray(targets)[:, None]
    return np.where(hit.any(1), hit.argmax(1), -1)


def rank_ndcg(rank: np.ndarray) -> np.ndarray:
    """NDCG of one relevant item at each 0-based rank (-1: absent): 1 / log2(rank + 2), or 0."""
    return np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)


def row_ndcg(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """NDCG of each top-K row: what paired comparisons and bootstrap intervals need before averaging."""
    return rank_ndcg(target_ranks(topk, targets))


def ranking_metrics(topk: np.ndarray, targets: np.ndarray, n_catalog: int, k: int = 10) -> dict[str, float]:
    topk = np.asarray(topk)[:, :k]
    rank = target_ranks(topk, targets)
    hit = rank >= 0
    ndcg = rank_ndcg(rank)
    mrr = np.where(hit, 1.0 / (np.maximum(rank, 0) + 1.0), 0.0)
    return {
        f"ndcg@{k}": float(ndcg.mean()) if len(ndcg) else 0.0,
        f"hit_rate@{k}": float(hit.mean()) if len(hit) else 0.0,
        f"mrr@{k}": float(mrr.mean()) if len(mrr) else 0.0,
        f"coverage@{k}": float(len(np.unique(topk)) / max(n_catalog, 1)),
        "users": int(len(targets)),
    }


def inter_list_diversity(topk: np.ndarray) -> float:
    """Mean pairwise cosine distance between users' top-K lists as binary item vectors.

    Two lists of K distinct items have cosine similarity |overlap| / K, and the sum of overlaps
    over all pairs is Σ_item c(c - 1)/2 for c = the number of lists holding the item, so this is
    O(U·K) instead of O(U²) (the same value jurity's InterListDiversity computes pairwise).
    """
    topk = np.asarray(topk)
    U, K = topk.shape
    if U < 2 or K == 0:
        return 0.0
    _, counts = np.unique(topk, return_counts=True)
    overlap = float((counts * (counts - 1) / 2).sum())
    return 1.0 - overlap / (K * U * (U - 1) / 2)


def attribute_shares(topk: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """Mean over users of the fraction of top-K items carrying each attribute.

    ``attrs``: (V + 1, A) boolean with row j = dense index j. Returns (A,).
    """
    return attrs[np.asarray(topk)].mean(axis=(0, 1))
