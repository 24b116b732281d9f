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


# ---------------------------------------------------------------- beyond accuracy (popularity)

def popularity_arrays(train_count: np.ndarray, head: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """From each item's train interaction count (dense index order, items 1..V): a (V + 1,) mask of
    the *head* (the top ``head`` fraction of items by count, ties broken by index) and (V + 1,)
    popularity p(i) = max(count, 1) / sum(counts), the share of train interactions (an item never
    seen in train counts as seen once, so novelty stays finite). Row 0 is padding.

    >>> head, p = popularity_arrays(np.array([50, 30, 10, 5, 5]))
    >>> head.tolist(), p.round(2).tolist()
    ([False, True, False, False, False, False], [0.0, 0.5, 0.3, 0.1, 0.05, 0.05])
    """
    c = np.asarray(train_count, dtype=np.float64)
    order = np.argsort(-c, kind="stable")
    is_head = np.zeros(len(c) + 1, dtype=bool)
    is_head[order[: int(round(head * len(c)))] + 1] = True
    p = np.concatenate([[0.0], np.maximum(c, 1.0) / max(c.sum(), 1.0)])
    return is_head, p


def gini_index(topk: np.ndarray, n_items: int) -> float:
    """Gini index of how often each of the ``n_items`` catalog items is recommended over all lists:
    0 when every item appears equally often, (n - 1) / n when one item takes every slot.
    With counts sorted ascending c_1..c_n: G = sum_i (2i - n - 1) c_i / (n sum_i c_i).

    >>> gini_index(np.array([[1, 2], [3, 4]]), 4)
    0.0
    >>> gini_index(np.array([[1], [1], [1]]), 4)
    0.75
    >>> round(gini_index(np.array([[1, 2], [1, 3]]), 4), 4)
    0.375
    """
    counts = np.bincount(np.asarray(topk).ravel(), minlength=n_items + 1)[1:n_items + 1].astype(np.float64)
    total = counts.sum()
    if total == 0 or n_items == 0:
        return 0.0
    c = np.sort(counts)
    i = np.arange(1, n_items + 1)
    return float(((2 * i - n_items - 1) * c).sum() / (n_items * total))


def long_tail_share(topk: np.ndarray, is_head: np.ndarray) -> float:
    """Fraction of recommended slots holding a long-tail item (not in the popularity head).

    >>> long_tail_share(np.array([[1, 2], [3, 1]]), np.array([False, True, False, False]))
    0.5
    """
    return float((~is_head[np.asarray(topk)]).mean())


def novelty(topk: np.ndarray, p: np.ndarray) -> float:
    """Mean self-information -log2 p(i) of the recommended items (popular items are less novel).

    >>> novelty(np.array([[1, 2]]), np.array([0.0, 0.5, 0.125]))
    2.0
    """
    return float(-np.log2(p[np.asarray(topk)]).mean())
