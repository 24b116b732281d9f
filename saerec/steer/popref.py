"""Reference curves for popularity steering: what two methods that need no SAE reach on the same
test points, so a PopSteer curve is read against a bar instead of alone.

- ``head_penalty``: each list re-ranked by ``p_i - lam * head_i``, with ``p`` the model's softmax
  over the catalog. For calibrated probabilities this is the Lagrangian of "the most expected hits
  for a given share of head slots": one price per head slot for every user, so a user the model is
  sure of keeps their head items and an unsure one gets tail items. It edits the output, not the
  model, and shows how much long tail the recommender's own ranking can give at a given NDCG cost.
  ``lam`` is in units of the median probability of the k-th ranked item over the points.
- ``linear_shift``: ``beta * r * v`` added to the user state the scores are read from (``r``: the
  points' RMS state norm), ``v`` the unit direction whose item scores best fit a head penalty
  (least squares, ``E v ~ -(head - mean head)`` over the items seen in training). PopSteer's ``add``
  edits on an SAE of that state are such a constant shift as well (the delta splice adds
  ``std * sum_j value_j W_dec[j]`` whatever the user), so this is the shift they would pick if
  they aimed at the head mask directly; its R^2 says how much of head membership any constant
  shift can express at all.
"""

from __future__ import annotations

import numpy as np
import torch

from ..eval.ranking import length_batches
from ..model.interface import mask_seen
from ..train.batching import pad_inputs

PENALTIES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
BETAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def head_penalty_topk(scores: torch.Tensor, is_head: torch.Tensor, penalties, k: int) -> torch.Tensor:
    """(b, len(penalties), k) column indices of the top k of ``p - lam * is_head`` per penalty, with
    ``p`` the softmax of ``scores``; columns scored ``-inf`` (seen items) stay out, whatever the
    penalty (a plain softmax would give them 0, above a penalised head item).

    >>> p = torch.tensor([[0.5, 0.3, 0.15, 0.05]]); head = torch.tensor([1.0, 1.0, 0.0, 0.0])
    >>> head_penalty_topk(p.log(), head, [0.0, 0.2, 1.0], 2).tolist()
    [[[0, 1], [0, 2], [2, 3]]]
    >>> head_penalty_topk(torch.tensor([[2.0, 1.0, -float("inf"), 0.0]]), head, [1.0], 2).tolist()
    [[[3, 0]]]
    """
    probs = torch.where(torch.isfinite(scores), torch.softmax(scores, 1), -torch.inf)
    return torch.stack([(probs - lam * is_head).topk(k, dim=1).indices for lam in penalties], dim=1)


def shift_direction(E: torch.Tensor, is_head: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The unit state direction whose item scores ``E v`` best fit ``-(head - mean head)`` over the
    ``seen`` items, and the fit's R^2.

    >>> E = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]])
    >>> v, r2 = shift_direction(E, torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.ones(4, dtype=torch.bool))
    >>> [round(x, 3) + 0.0 for x in v.tolist()], round(r2, 3)
    ([-1.0, 0.0], 1.0)
    """
    y = -(is_head - is_head[seen].mean())
    A, t = E[seen].double(), y[seen, None].double()
    v = torch.linalg.lstsq(A, t).solution[:, 0]
    resid = (A @ v - t[:, 0]).pow(2).sum()
    r2 = float(1 - resid / t.pow(2).sum().clamp_min(1e-12))
    return (v / v.norm().clamp_min(1e-12)).float(), r2


@torch.inference_mode()
def reference_lists(model, layer: str, histories: list[np.ndarray], is_head: np.ndarray, seen: np.ndarray,
                    k: int = 10, penalties=PENALTIES, betas=BETAS, max_rows: int = 1024) -> tuple[np.ndarray, list[dict], dict]:
    """Top-k lists of both references on ``histories``: (U, n, k) dense indices, one spec per
    variant ({"method", "strength"}: the unsteered model first, as strength 0 of both), and facts
    of the fit (R^2, the RMS state norm, the median k-th probability)."""
    head = torch.from_numpy(np.asarray(is_head[1:], dtype=np.float32))      # column j = item j + 1
    d = None
    finals, probs_k = [], []
    batches = length_batches([len(h) for h in histories], max_rows)
    for rows in batches:                                     # pass 1: the states (kept: U x d), the k-th probability
        final = final_states(model, layer, [histories[i] for i in rows])
        d = final.shape[1]
        finals.append(final)
        probs_k.append(torch.softmax(masked_scores(model, final, [histories[i] for i in rows]), 1)
                       .topk(k, dim=1).values[:, -1])
    rms = float(torch.cat(finals).pow(2).sum(1).mean().sqrt()) if finals else 0.0
    p_k = float(torch.cat(probs_k).median()) if probs_k else 0.0
    E = item_matrix(model, d) if d else torch.zeros(0, 0)
    v, r2 = shift_direction(E, head, torch.from_numpy(np.asarray(seen, dtype=bool))) if d else (None, 0.0)
    specs = ([{"method": "unsteered", "strength": 0.0}]
             + [{"method": "head_penalty", "strength": float(s)} for s in penalties]
             + [{"method": "linear_shift", "strength": float(s)} for s in betas])
    out = np.zeros((len(histories), len(specs), k), dtype=np.int64)
    for rows, final in zip(batches, finals):                 # pass 2: the lists, from pass 1's states
        hs = [histories[i] for i in rows]
        scores = masked_scores(model, final, hs)
        lists = [scores.topk(k, dim=1).indices[:, None]]
        lists.append(head_penalty_topk(scores, head, [s * p_k for s in penalties], k))
        for beta in betas:
            lists.append(masked_scores(model, final + beta * rms * v, hs).topk(k, dim=1).indices[:, None])
        out[rows] = (torch.cat(lists, dim=1) + 1).numpy()
    return out, specs, {"shift_r2": r2, "state_rms": rms, "median_p_at_k": p_k}


def item_matrix(model, d: int) -> torch.Tensor:
    """(V, d): row i is how item i's score moves per unit of each final-state dimension."""
    return (model.scores(torch.eye(d)) - model.scores(torch.zeros(1, d))).T


def final_states(model, layer: str, histories: list[np.ndarray]) -> torch.Tensor:
    """(b, d) user states the item scores are read from (the unsteered model)."""
    items, lengths = pad_inputs(histories)
    cache = model.prefill_last(items, lengths, layer)
    return model.replay_last(cache, cache.state[:, None, :])[:, 0]


def masked_scores(model, final: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    items, _ = pad_inputs(histories)
    scores = model.scores(final)
    return scores.add_(mask_seen(torch.zeros_like(scores), items))
