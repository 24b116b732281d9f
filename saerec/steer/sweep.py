"""The steering evaluation (paper Section 8.2): sweep one direction's value, measure the lists.

A *curve* is (attribute, method, mode, splice): e.g. the Sci-Fi SAE feature set to v at the last
step with the delta splice. For every value the test users' top-k lists give: the share of every
genre, NDCG/HitRate/Coverage@k and inter-list diversity. ``summarise`` turns the curves into the
checks docs/results.md reports (monotonicity, lift at +5, NDCG cost at |v| <= 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..config import SteerConfig
from ..eval.metrics import (attribute_shares, gini_index, inter_list_diversity, long_tail_share, novelty,
                            popularity_arrays, ranking_metrics, row_ndcg)
from ..progress import Progress
from .edits import Edit
from .intervene import Steerer


@dataclass(frozen=True)
class Curve:
    attribute: str
    method: str          # sae | probe
    mode: str            # set | add | scale
    splice: str          # delta | reconstruction

    @property
    def name(self) -> str:
        return f"{self.method}/{self.mode}/{self.splice}"


def default_curves(cfg: SteerConfig, attributes: list[str]) -> list[Curve]:
    """Figure 8: SAE ``cfg.mode`` for each splice; Figure 9: SAE vs probe, both ``add`` with delta."""
    curves = [Curve(a, "sae", cfg.mode, s) for a in attributes for s in cfg.splices]
    if cfg.probe:
        curves += [Curve(a, m, "add", "delta") for a in attributes for m in ("sae", "probe")]
    return list(dict.fromkeys(curves))


def sweep_values(cfg: SteerConfig) -> np.ndarray:
    n = int(round((cfg.value_max - cfg.value_min) / cfg.value_step)) + 1
    return np.round(cfg.value_min + cfg.value_step * np.arange(n), 10)


def draw_users(users: np.ndarray, max_users: int | None, seed: int = 0) -> np.ndarray | None:
    """A seeded uniform choice of ``max_users`` of ``users``, in their order; None when there are no
    more users than that (or no limit): the one draw both :class:`Points` samplers make.

    >>> draw_users(np.array([5, 7, 9]), 3) is None, draw_users(np.array([5, 7, 9]), None) is None
    (True, True)
    >>> draw_users(np.array([5, 7, 9, 11]), 2, seed=1).tolist()
    [7, 9]
    """
    if max_users is None or len(users) <= max_users:
        return None
    return users[np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))]


@dataclass(frozen=True)
class Points:
    """What a sweep is measured on: the last few next-item predictions of every test user
    (:func:`saerec.data.sequences.eval_points`), ``owner`` naming each point's user.

    Why several per user: the paper scores each test user's last item only, and with 300 test users
    that is about 77 hits, so one value's NDCG change carries a 95% interval about +-8 points wide;
    ten points per user give ten times the hits. The last point of every user is still the paper's
    protocol, reported beside the pooled figure.
    """

    inputs: list[np.ndarray]
    targets: np.ndarray
    owner: np.ndarray

    @classmethod
    def of_test_users(cls, run, max_len: int, positions: int, max_users: int | None = None,
                      seed: int = 0) -> "Points":
        """The test users' last ``positions`` predictions, read from the run's sequences file only
        (not the whole log), in the recommender's index. With ``max_users``, the users are drawn
        first (as :meth:`sample_users` draws them) and only theirs are read: at 20M interactions,
        reading every test user's ten histories before sampling 1,000 held 138,000 arrays."""
        from ..data.prepare import part_users
        from ..model.checkpoint import test_pairs

        chosen = None
        if max_users is not None:
            users = part_users(run, "test")
            chosen = draw_users(users, max_users, seed)
        test = test_pairs(run, max_len, positions, users=chosen)
        return cls(test.inputs, test.targets, test.owner)

    def sample_users(self, max_users: int | None, seed: int = 0) -> "Points":
        """The points of at most ``max_users`` users (a seeded uniform choice, kept in file order,
        owners renumbered 0..n-1); ``self`` when there are no more users than that.

        >>> p = Points([np.arange(2)] * 5, np.arange(5), np.array([0, 0, 1, 2, 2]))
        >>> p.sample_users(3) is p, p.sample_users(None) is p
        (True, True)
        >>> q = p.sample_users(2, seed=1)
        >>> q.users, sorted(set(q.owner.tolist())), [int(t) for t in q.targets]
        (2, [0, 1], [0, 1, 2])
        """
        chosen = draw_users(np.unique(self.owner), max_users, seed)
        if chosen is None:
            return self
        idx = np.flatnonzero(np.isin(self.owner, chosen))
        owner = np.unique(self.owner[idx], return_inverse=True)[1]
        return Points([self.inputs[i] for i in idx], self.targets[idx], owner)

    @property
    def last(self) -> np.ndarray:
        """Each user's last point (points of a user are contiguous, oldest first)."""
        return np.append(self.owner[1:] != self.owner[:-1], True) if len(self.owner) else np.zeros(0, bool)

    @property
    def users(self) -> int:
        return int(self.last.sum())


def list_metrics(topk: np.ndarray, points: Points, n_items: int, genre_matrix: np.ndarray,
                 genres: list[str], k: int, popularity: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Accuracy, genre shares, long-tail share and novelty over every point; Coverage, inter-list
    diversity and the Gini index, which compare lists across users, over one list per user (the last
    point), and NDCG/HitRate of that list too. ``popularity``: (head mask, p) from popularity_arrays."""
    last = points.last
    m = ranking_metrics(topk, points.targets, n_items, k)
    one = ranking_metrics(topk[last], points.targets[last], n_items, k)
    m.update({f"coverage@{k}": one[f"coverage@{k}"], "users": one["users"], "points": len(points.targets),
              f"ndcg@{k}_last": one[f"ndcg@{k}"], f"hit_rate@{k}_last": one[f"hit_rate@{k}"]})
    m[f"ild@{k}"] = inter_list_diversity(topk[last])
    if popularity is not None:
        m[f"gini@{k}"] = gini_index(topk[last], n_items)
        m[f"long_tail@{k}"] = long_tail_share(topk, popularity[0])
        m[f"novelty@{k}"] = novelty(topk, popularity[1])
    m.update({f"share:{g}": float(s) for g, s in zip(genres, attribute_shares(topk, genre_matrix))})
    m.update({f"share_last:{g}": float(s) for g, s in zip(genres, attribute_shares(topk[last], genre_matrix))})
    return m


def run_sweep(steerer: Steerer, points: Points, curves: list[Curve], values: np.ndarray, k: int = 10,
              max_rows: int = 8192, progress: bool = True) -> tuple[pd.DataFrame, dict, dict]:
    """One row per (curve, value); the unsteered baselines (original and SAE-reconstructed); the
    per-point NDCG of every (attribute, curve, value) for paired confidence intervals."""
    items = steerer.items
    genres = items.genres
    G = items.attribute_matrix(genres)
    n = steerer.model.n_items
    inputs, targets = points.inputs, points.targets
    pop = (popularity_arrays(items.items["train_count"].to_numpy()) if "train_count" in items.items else None)
    original = steerer.recommend(inputs, None, k=k, splice="delta")
    base = {
        "original": list_metrics(original, points, n, G, genres, k, pop),
        "reconstructed": list_metrics(steerer.recommend(inputs, None, k=k, splice="reconstruction"),
                                      points, n, G, genres, k, pop),
        "per_point_ndcg": row_ndcg(original, targets),
    }
    rows, per_point = {}, {}
    bar = Progress("steering sweep", len(curves) * len(values) * len(inputs), "lists", enabled=progress)
    for splice in dict.fromkeys(c.splice for c in curves):
        # every curve of one splice in one replay: each history is prefilled once, not once per curve
        group = [c for c in curves if c.splice == splice]
        variants = [[Edit(c.attribute, float(v), c.mode, "last", c.method)] for c in group for v in values]
        topk = steerer.recommend_variants(inputs, variants, k=k, splice=splice, max_rows=max_rows,
                                          progress=lambda u: bar.update(u * len(variants), extra=splice))
        for j, c in enumerate(group):
            target = steerer.resolve(variants[j * len(values)][0]).index
            rows[c] = []
            for i, v in enumerate(values):
                top = topk[:, j * len(values) + i]
                m = list_metrics(top, points, n, G, genres, k, pop)
                per_point[(c.attribute, c.name, float(v))] = row_ndcg(top, targets)
                rows[c].append({"attribute": c.attribute, "method": c.method, "mode": c.mode,
                                "splice": c.splice, "curve": c.name, "target": target, "value": float(v),
                                "target_share": m.get(f"share:{c.attribute}", np.nan),
                                "target_share_last": m.get(f"share_last:{c.attribute}", np.nan), **m})
    return pd.DataFrame([r for c in curves for r in rows[c]]), base, per_point


def bootstrap_drop(base: np.ndarray, steered: np.ndarray, owner: np.ndarray | None = None, n: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """95% paired-bootstrap interval of the relative NDCG drop 1 - steered/base, resampling users
    (a user's points move together: they are not independent)."""
    if owner is not None:
        users = int(owner.max()) + 1 if len(owner) else 0
        base, steered = np.bincount(owner, base, users), np.bincount(owner, steered, users)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(n, len(base)))
    b, s = base[idx].sum(1), steered[idx].sum(1)
    drop = 1 - s / np.maximum(b, 1e-12)
    return float(np.quantile(drop, 0.025)), float(np.quantile(drop, 0.975))


def summarise(table: pd.DataFrame, base: dict, per_point: dict, points: Points, k: int = 10,
              lift_at: float = 5.0, safe: float = 2.0) -> list[dict]:
    """Per curve: Spearman(value, target share), share at +``lift_at`` vs unsteered, worst NDCG drop at
    |value| <= ``safe`` relative to the original model, and whether each must-show target holds.

    Figures are pooled over all points (the drop with a paired-bootstrap 95% interval over users);
    the same figures over each user's last item only (the paper's protocol) sit beside them, with
    the suffix ``_last_item``. The ``_ok`` checks use the pooled ones."""
    out = []
    owner, last = points.owner, points.last
    b_all = base["per_point_ndcg"]
    for (attr, curve), g in table.groupby(["attribute", "curve"], sort=False):
        g = g.sort_values("value")
        rho = float(spearmanr(g["value"], g["target_share"]).statistic) if g["target_share"].nunique() > 1 else 0.0
        near = g[g["value"].abs() <= safe + 1e-9]
        row = {"attribute": attr, "curve": curve, "target": int(g["target"].iloc[0]), "spearman": rho}
        for suffix, col, share in (("", "target_share", "share"), ("_last_item", "target_share_last", "share_last")):
            share0 = base["original"].get(f"{share}:{attr}", np.nan)
            at = g.loc[np.isclose(g["value"], lift_at), col]
            row.update({f"unsteered_share{suffix}": share0,
                        f"share_at_{lift_at:g}{suffix}": float(at.iloc[0]) if len(at) else np.nan,
                        f"lift{suffix}": float(at.iloc[0] / share0) if len(at) and share0 > 0 else np.nan})
        for suffix, col, mask in (("", f"ndcg@{k}", None), ("_last_item", f"ndcg@{k}_last", last)):
            ndcg0 = base["original"][col]
            drop = float(1 - near[col].min() / ndcg0) if len(near) and ndcg0 > 0 else np.nan
            worst = float(near.loc[near[col].idxmin(), "value"]) if len(near) else np.nan
            steered = per_point.get((attr, curve, worst))
            if steered is None:
                ci = (np.nan, np.nan)
            elif mask is None:
                ci = bootstrap_drop(b_all, steered, owner)
            else:
                ci = bootstrap_drop(b_all[mask], steered[mask])
            row.update({f"max_ndcg_drop_abs_le_{safe:g}{suffix}": drop, f"worst_value{suffix}": worst,
                        f"ndcg_drop_ci95{suffix}": list(ci)})
        row.update({"monotone_ok": rho >= 0.9, "lift_ok": bool(row["lift"] >= 3.0),
                    "ndcg_ok": bool(row[f"max_ndcg_drop_abs_le_{safe:g}"] <= 0.10)})
        out.append(row)
    return out
