"""Per-user PopSteer: the steered SAE features' values fitted so each user's list is the one a
head-penalty re-ranking would give.

Why: PopSteer's edit (:mod:`saerec.steer.popsteer`) gives every user the same feature values, so
after the delta splice it is one constant shift of the user state, and a constant shift lowers
head items' scores only as far as the item embeddings line up with one direction (27-36% of head
membership, :mod:`saerec.steer.popref`'s R^2): about 1.5x the long-tail share at a 10% NDCG@10
cost on the ML-1M GPTRec. Per user the state has d degrees of freedom and a top-10 list needs
only ten items above the rest, so one user's edit can do much more, if it is aimed well. The aim
is the head-penalty reference's list (``p_i - lam * head_i`` on the model's softmax: for
calibrated probabilities, the most expected hits for a given share of head slots). So, per user and
on the same features PopSteer chose (Cohen's d between popular-only and niche-only users):

1. ``T``: the user's top-k under the head penalty ``lam`` (``penalties``, in units of the median
   probability of the k-th item, as the reference).
2. :func:`fit_edit`: the edit of the SAE's state that puts ``T`` above every other unseen item (a
   smooth pairwise hinge, Adam, a small ridge on the edit), the scores of each trial edit computed
   exactly: at the final state a move of the scores, at an earlier layer through the later blocks
   by the last-step replay (differentiable).
3. :func:`feature_values`: the smallest feature values ``c`` whose delta splice makes that edit
   (``c @ std W_dec``; the features span all d directions, so the edit is made exactly).
4. The edit ``add c_j`` at the last step ranks the items (the steered model's scores).

The edit stays an SAE edit, ranked by the steered model; what it borrows from the head penalty is
the target. On the ML-1M GPTRec (docs/sae-eval.md) the steered lists reach the head penalty's
trade-off: 2.24x the long-tail share at an 8.7% NDCG@10 drop on a final-state SAE, 2.23x at 9.8%
on the default block.0 SAE. SAE steering can carry the best re-ranking of this kind, and no more.
Session 20 fitted the values by ridge to a head mask on each user's 50 most probable items instead
(1.86x at 9.1% on the same final-state run). Linearising the later blocks instead of replaying
them does not work here: the fitted edits are far outside the blocks' linear range (72-88% NDCG
lost at block.0 through a Jacobian, even with three Newton-like corrections).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.ranking import length_batches
from ..model.interface import mask_seen
from ..train.batching import pad_inputs
from .popref import head_penalty_topk, masked_scores

log = logging.getLogger("saerec.steer")

PENALTIES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass(frozen=True)
class PerUserConfig:
    penalties: tuple[float, ...] = PENALTIES  # head penalties, in units of the median k-th probability
    steps: int = 150                          # Adam steps of each user's fit
    margin: float = 0.5                       # hinge margin, in units of the user's top scores' spread
    ridge: float = 1e-3                       # on the move's squared norm, in state RMS norms


def fit_edit(scores: torch.Tensor, move, target: torch.Tensor, d: int, unit: float, steps: int = 150,
             margin: float = 0.5, ridge: float = 1e-3, lr: float = 0.05) -> torch.Tensor:
    """Per row, the state edit (b, d) after which the ``target`` columns (b, k, in order) score above
    every other finite column of ``scores + move(edit)`` (``move``: the edit's change of every score,
    differentiable): a softplus hinge of each other item against a soft minimum of the target's
    scores, one of each target item against the next (the order), and ``ridge`` on
    ``|edit|^2 / unit^2``. ``unit``: the edited states' RMS norm, the step size's scale. Scores of
    ``-inf`` (seen items) stay out.

    >>> E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> s = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, -float("inf")]])
    >>> moved = s + fit_edit(s, lambda e: e @ E.T, torch.tensor([[2, 1], [1, 0]]), d=2, unit=1.0) @ E.T
    >>> moved[:, :2].argsort(1, descending=True).tolist(), bool(moved[0, 2] > moved[0, 1] > moved[0, 0])
    ([[1, 0], [1, 0]], True)
    """
    k = target.shape[1]
    scores = scores.detach()
    finite = torch.isfinite(scores)
    base = torch.where(finite, scores, torch.zeros_like(scores))
    top = base.masked_fill(~finite, -1e30).topk(min(2 * k, scores.shape[1]), dim=1).values
    ok = top > -1e29
    top = torch.where(ok, top, 0.0)
    mean = top.sum(1, keepdim=True) / ok.sum(1, keepdim=True).clamp_min(1)
    var = torch.where(ok, top - mean, 0.0).pow(2).sum(1, keepdim=True) / (ok.sum(1, keepdim=True) - 1).clamp_min(1)
    scale = var.sqrt().clamp_min(1e-3)                                   # the user's logit scale: its top scores' spread
    others = finite.clone().scatter_(1, target, False)
    edit = torch.zeros(scores.shape[0], d, requires_grad=True)
    opt = torch.optim.Adam([edit], lr=lr * unit / d ** 0.5)
    with torch.enable_grad():
        for _ in range(steps):
            s = (base + move(edit)) / scale
            st = s.gather(1, target)
            floor = -torch.logsumexp(-4 * st, dim=1, keepdim=True) / 4       # soft minimum of the target
            above = F.softplus(s - floor + margin).masked_fill(~others, 0).sum(1)
            order = F.softplus(st[:, 1:] - st[:, :-1] + 0.2 * margin).sum(1)
            loss = (above + order).mean() + ridge * scores.shape[1] * (edit.pow(2).sum(1) / unit ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return edit.detach()


def feature_values(moves: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest ``c`` (b, n) whose move ``c @ moves`` is closest to ``delta`` (b, d);
    ``moves`` (b or 1, n, d): the final-state move of one unit of each feature.

    >>> moves = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    >>> [round(v, 3) + 0.0 for v in feature_values(moves, torch.tensor([[2.0, 2.0]]))[0].tolist()]
    [1.0, 1.0, 1.0]
    """
    A = moves.transpose(1, 2).double().expand(len(delta), -1, -1)           # (b, d, n)
    return torch.linalg.lstsq(A, delta.double()[..., None], driver="gelsd").solution[..., 0].float()


def per_user_lists(steerer, histories: list[np.ndarray], features: np.ndarray, is_head: np.ndarray,
                   cfg: PerUserConfig = PerUserConfig(), k: int = 10, max_rows: int = 512) -> tuple[np.ndarray, dict]:
    """Top-k lists (U, 1 + len(penalties), k) in dense indices (the unsteered model first) under each
    user's fitted values of ``features``, and facts: the RMS norm of the edited states, the median
    k-th probability (the penalties' unit), per feature the mean value and mean |value| over users
    and penalties (which features the fits lean on)."""
    model, sae, norm = steerer.model, steerer.sae, steerer.norm
    S = torch.from_numpy(np.array(features, dtype=np.int64))
    WS = sae.W_dec[S].detach().float() * norm.std.float()                 # (n, d): one unit of each feature
    d_out = model.n_items
    head = torch.from_numpy(np.asarray(is_head[1:1 + d_out], dtype=np.float32))
    histories = [steerer.truncate(h) for h in histories]
    batches = length_batches([len(h) for h in histories], max_rows)
    with torch.no_grad():     # pass 1: the edited states' RMS norm (the edits' unit), the k-th probability
        sq, p_k = 0.0, []
        for rows in batches:
            hs = [histories[i] for i in rows]
            items, lengths = pad_inputs(hs)
            cache = model.prefill_last(items, lengths, steerer.layer)
            sq += float(cache.state.pow(2).sum())
            final = model.replay_last(cache, cache.state[:, None])[:, 0]
            p_k.append(torch.softmax(masked_scores(model, final, hs), 1).topk(k, dim=1).values[:, -1])
    rms = (sq / max(len(histories), 1)) ** 0.5
    unit = float(torch.cat(p_k).median()) if p_k else 0.0
    out = np.zeros((len(histories), 1 + len(cfg.penalties), k), dtype=np.int64)
    value_sum, abs_sum = torch.zeros(len(S)), torch.zeros(len(S))
    done, started = 0, time.monotonic()
    for rows in batches:                                                  # pass 2: fit, steer, rank
        hs = [histories[i] for i in rows]
        with torch.no_grad():
            items, lengths = pad_inputs(hs)
            cache = model.prefill_last(items, lengths, steerer.layer)
            plain = model.scores(model.replay_last(cache, cache.state[:, None])[:, 0])
            scores = plain + mask_seen(torch.zeros_like(plain), items)
            targets = head_penalty_topk(scores, head, [lam * unit for lam in cfg.penalties], k)

        def move(edit, cache=cache, plain=plain):                         # exact: replayed through later blocks
            return model.scores(model.replay_last(cache, (cache.state + edit)[:, None])[:, 0]) - plain

        lists = [scores.topk(k, dim=1).indices]
        for j in range(len(cfg.penalties)):
            edit = fit_edit(scores, move, targets[:, j], WS.shape[1], rms, cfg.steps, cfg.margin, cfg.ridge)
            with torch.no_grad():
                c = feature_values(WS[None], edit)                        # the features' values making the edit
                value_sum += c.sum(0)
                abs_sum += c.abs().sum(0)
                lists.append((scores + move(c @ WS)).topk(k, dim=1).indices)
        out[rows] = (torch.stack(lists, dim=1) + 1).numpy()
        done += len(rows)
        rate = done / max(time.monotonic() - started, 1e-9)
        log.info("per-user PopSteer: %d/%d users fitted (%.1f/s, ETA %.0fs)", done, len(histories), rate,
                 (len(histories) - done) / rate)
    n = max(len(histories), 1) * max(len(cfg.penalties), 1)
    return out, {"state_rms": rms, "median_p_at_k": unit, "mean_value": (value_sum / n).numpy(),
                 "mean_abs_value": (abs_sum / n).numpy()}
