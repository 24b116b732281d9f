"""Top-K recommendation lists from GPTRec (or popularity) with seen items filtered."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch

from ..heap import every
from ..model.interface import Intervention, SequentialRecommender
from ..precision import autocast
from ..train.batching import pad_inputs
from .metrics import ranking_metrics


Interventions = Union[Mapping[str, Intervention], Callable[[np.ndarray], Mapping[str, Intervention]], None]


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Row indices sorted by length, cut into batches of at most ``batch_size`` rows and, with
    ``max_tokens``, at most that many padded positions (rows x the batch's longest row): padding
    costs as much as real positions, and a mixed batch pads every row to its longest."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    out, lo = [], 0
    while lo < len(order):
        hi = lo + 1
        while hi < len(order) and hi - lo < batch_size and (
                max_tokens is None or (hi - lo + 1) * lengths[order[hi]] <= max_tokens):
            hi += 1
        out.append(order[lo:hi])
        lo = hi
    return out


@torch.inference_mode()       # not just no_grad: no view/version bookkeeping either (~5% of a lone request)
def recommend(model: SequentialRecommender, inputs: list[np.ndarray], k: int = 10, batch_size: int = 256,
              exclude_seen: bool = True, interventions: Interventions = None,
              device: str | torch.device = "cpu", with_scores: bool = False, max_tokens: int | None = None,
              candidates: Callable[[np.ndarray], torch.Tensor | None] | None = None,
              dtype: torch.dtype | None = None):
    """Top-``k`` dense indices for each input sequence (batched by length to avoid padding work).

    ``interventions`` is either one mapping for every batch, or a function of the batch's rows (indices
    into ``inputs``) returning the mapping, so each input can carry its own edits.
    ``with_scores``: also return the (N, k) scores of the listed items. ``max_tokens``: see
    :func:`length_batches`. ``candidates``: a function of the batch's rows returning a (b, V) score
    mask (0 eligible, -inf not) added after the model's scores and before the top-k, or None for no
    mask (the serving business rules): a masked item can only be listed with score -inf.
    ``dtype``: autocast dtype of the forward pass (None: fp32).
    """
    was_training = model.training
    if was_training:                         # .train()/.eval() walk every module: skip when already in eval
        model.eval()
    out = np.zeros((len(inputs), k), dtype=np.int64)
    vals = np.zeros((len(inputs), k), dtype=np.float32)
    # long offline passes: keep the heap from growing with them (a one-batch call, as in serving, never
    # trims). Every 2 batches, evaluate at 20M interactions peaked at 606-640 MB, at every 8 at 702-814
    # MB (609 MB at 2M), and ran 7% slower (docs/benchmarks.md, "Session 18")
    tick = every(2)
    for rows in length_batches([len(s) for s in inputs], batch_size, max_tokens):
        tick()
        items, lengths = pad_inputs([inputs[i] for i in rows])
        items, lengths = items.to(device), lengths.to(device)
        ivs = interventions(rows) if callable(interventions) else interventions
        with autocast(dtype, device):
            scores = model.last_scores(items, lengths, ivs, exclude_seen)
        mask = candidates(rows) if candidates is not None else None
        top = (scores if mask is None else scores + mask.to(scores.device, scores.dtype)).topk(k, dim=1)
        out[rows] = (top.indices + 1).cpu().numpy()
        vals[rows] = top.values.float().cpu().numpy()
    if was_training:
        model.train()
    return (out, vals) if with_scores else out


def popularity_topk(counts: np.ndarray, inputs: list[np.ndarray], k: int = 10) -> np.ndarray:
    """Most popular items (``counts[j]`` for dense index j + 1), excluding each user's seen items."""
    ranked = np.argsort(-counts, kind="stable") + 1
    head = ranked[: k + max((len(s) for s in inputs), default=0)]
    out = np.zeros((len(inputs), k), dtype=np.int64)
    for r, s in enumerate(inputs):
        out[r] = head[~np.isin(head, s)][:k]
    return out


def evaluate_model(model: SequentialRecommender, inputs: list[np.ndarray], targets: np.ndarray, k: int = 10,
                   batch_size: int = 256, device="cpu", dtype: torch.dtype | None = None) -> dict[str, float]:
    topk = recommend(model, inputs, k=k, batch_size=batch_size, device=device, dtype=dtype)
    return ranking_metrics(topk, targets, model.n_items, k)
