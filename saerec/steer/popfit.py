"""Per-user PopSteer: the steered SAE features' values fitted to each user's own candidates.

Why: PopSteer's edit (:mod:`saerec.steer.popsteer`) gives every user the same feature values, so
after the delta splice it is one constant shift of the user state. A constant shift lowers each
head item's score only as far as the item embeddings line up with one direction, and they express
27-36% of head membership that way (:mod:`saerec.steer.popref`'s R^2): on the ML-1M GPTRec the
constant edits reach about 1.5x the long-tail share at a 10% NDCG@10 cost (docs/sae-eval.md). One
user's list needs something narrower: among the few dozen items that user's top-k is drawn from,
head items down and tail items up. So, per user and on the same features PopSteer chose (Cohen's d
between popular-only and niche-only users):

1. ``C``: the user's ``candidates`` most probable unseen items; ``y = -(head_C - mean(head_C))``.
2. ``X[i, j]``: how far adding one unit of feature ``j`` (the delta splice: ``std * W_dec[j]``)
   moves candidate ``i``'s score. At the final state this is exact (``e_i . std W_dec[j]``); at an
   earlier layer the later blocks are linearised at the user's state by central differences of the
   last-step replay (:func:`layer_jacobian`).
3. ``c``: the smallest ridge solution of ``X c ~ y`` (:func:`fit_values`), the user's feature values.
4. Strength ``s``: ``c`` scaled so the final state moves by ``s`` times the test states' RMS norm,
   the unit :mod:`saerec.steer.popref`'s linear shift uses, then replayed exactly (not linearised).

The edit stays an SAE edit: per user, ``add c_j`` at the last step on PopSteer's features (the
features' mean values over the users are written beside their Cohen's d). What it borrows from the
head-penalty reference is the target (the user's own candidates), not the output: the items are
still ranked by the steered model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..eval.ranking import length_batches
from ..model.interface import mask_seen
from ..train.batching import pad_inputs
from .popref import final_states, item_matrix

STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass(frozen=True)
class PerUserConfig:
    candidates: int = 50        # the user's most probable unseen items the values are fitted on
    ridge: float = 1e-3         # ridge, relative to the mean squared row norm of X
    strengths: tuple[float, ...] = STRENGTHS   # final-state shift, in RMS state norms


def fit_values(X: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per row b, the smallest-norm ridge solution ``c`` of ``X[b] c ~ y[b]``: (b, M, n), (b, M) ->
    (b, n), through the (M x M) dual system (a user has fewer candidates than PopSteer has features).

    >>> X = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    >>> [round(v, 3) + 0.0 for v in fit_values(X, torch.tensor([[1.0, -1.0]]), ridge=0.0)[0].tolist()]
    [1.0, -0.5, 0.0]
    """
    K = X @ X.transpose(1, 2)
    M = K.shape[1]
    eye = torch.eye(M, dtype=X.dtype)
    lam = ridge * K.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
    K = K + lam[:, None, None] * eye + 1e-9 * eye
    return (X.transpose(1, 2) @ torch.linalg.solve(K, y[..., None]))[..., 0]


def candidate_targets(scores: torch.Tensor, is_head: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` highest-scoring columns per row and their targets ``-(head - mean head)``.

    >>> top, y = candidate_targets(torch.tensor([[0.1, 0.9, 0.5, 0.7]]), torch.tensor([1.0, 1.0, 0.0, 0.0]), 2)
    >>> top.tolist(), y.tolist()
    ([[1, 3]], [[-0.5, 0.5]])
    """
    top = scores.topk(m, dim=1).indices
    h = is_head[top]
    return top, -(h - h.mean(1, keepdim=True))


def layer_jacobian(model, cache, state: torch.Tensor, layer: str) -> torch.Tensor | None:
    """(b, d, d) d final / d state at each row's last step (central differences of the replay), or
    None when ``layer`` is the ``final`` state itself (the identity)."""
    if layer == "final":
        return None
    b, d = state.shape
    eps = 1e-2 * state.norm(dim=1).clamp_min(1e-6)[:, None, None]
    step = eps * torch.eye(d)[None]                                      # (b, d, d): row k moves dim k
    out = model.replay_last(cache, torch.cat([state[:, None] + step, state[:, None] - step], dim=1))
    return ((out[:, :d] - out[:, d:]) / (2 * eps)).transpose(1, 2)       # [b, i, k] = d final_i / d state_k


@torch.inference_mode()
def per_user_lists(steerer, histories: list[np.ndarray], features: np.ndarray, is_head: np.ndarray,
                   cfg: PerUserConfig = PerUserConfig(), k: int = 10, max_rows: int = 512) -> tuple[np.ndarray, dict]:
    """Top-k lists (U, 1 + len(strengths), k) in dense indices (the unsteered model first) under each
    user's fitted values of ``features``, and facts: the RMS final-state norm, per feature the mean
    value and mean |value| at strength 1 (which features the fits lean on)."""
    model, sae, norm = steerer.model, steerer.sae, steerer.norm
    S = torch.from_numpy(np.array(features, dtype=np.int64))
    WS = sae.W_dec[S].float() * norm.std.float()                          # (n, d): one unit of each feature
    d_out = model.n_items
    head = torch.from_numpy(np.asarray(is_head[1:1 + d_out], dtype=np.float32))
    histories = [steerer.truncate(h) for h in histories]
    batches = length_batches([len(h) for h in histories], max_rows)
    # pass 1: the final states (kept: U x d) and their RMS norm, the unit of a strength
    finals = [final_states(model, steerer.layer, [histories[i] for i in rows]) for rows in batches]
    rms = float(torch.cat(finals).pow(2).sum(1).mean().sqrt()) if finals else 0.0
    strengths = torch.tensor(cfg.strengths, dtype=torch.float32)
    out = np.zeros((len(histories), 1 + len(strengths), k), dtype=np.int64)
    value_sum, abs_sum = torch.zeros(len(S)), torch.zeros(len(S))
    E = item_matrix(model, sae.d_in)                                      # (V, d): score of item i = e_i . final
    for rows, final in zip(batches, finals):                              # pass 2: fit, steer, rank
        hs = [histories[i] for i in rows]
        items, lengths = pad_inputs(hs)
        cache = model.prefill_last(items, lengths, steerer.layer)
        seen = mask_seen(torch.zeros(len(hs), d_out), items)
        scores = model.scores(final) + seen
        top, y = candidate_targets(scores, head, min(cfg.candidates, d_out))
        J = layer_jacobian(model, cache, cache.state, steerer.layer)
        moves = WS[None] if J is None else (J @ WS.T).transpose(1, 2)     # (b or 1, n, d): final-state move per unit
        X = E[top] @ moves.transpose(1, 2)                                # (b, M, n)
        c = fit_values(X, y, cfg.ridge)
        shift = (c[:, None] @ moves)[:, 0]                                # (b, d) final-state move of c
        unit = (rms / shift.norm(dim=1).clamp_min(1e-12))[:, None]        # c * unit: a shift of one RMS norm
        c = c * unit
        value_sum += c.sum(0)
        abs_sum += c.abs().sum(0)
        layer_edit = c @ WS                                               # (b, d) the delta splice at the layer
        variants = cache.state[:, None] + strengths[None, :, None] * layer_edit[:, None]
        steered = model.scores(model.replay_last(cache, variants)) + seen[:, None]
        lists = torch.cat([scores.topk(k, dim=1).indices[:, None], steered.topk(k, dim=2).indices], dim=1)
        out[rows] = (lists + 1).numpy()
    n = max(len(histories), 1)
    return out, {"state_rms": rms, "mean_value": (value_sum / n).numpy(), "mean_abs_value": (abs_sum / n).numpy()}

