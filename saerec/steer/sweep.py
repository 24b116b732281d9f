"""The steering evaluation (paper Section 8.2): sweep one direction's value, measure the lists.

A *curve* is (attribute, method, mode, splice): e.g. the Sci-Fi SAE feature set to v at the last
step with the delta splice. For every value the test users' top-k lists give: the share of every
genre, NDCG/HitRate/Coverage@k and inter-list diversity. ``summarise`` turns the curves into the
checks the README reports (monotonicity, lift at +5, NDCG cost at |v| <= 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..config import SteerConfig
from ..eval.metrics import attribute_shares, inter_list_diversity, ranking_metrics, target_ranks
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


def list_metrics(topk: np.ndarray, targets: np.ndarray, n_items: int, genre_matrix: np.ndarray,
                 genres: list[str], k: int) -> dict:
    m = ranking_metrics(topk, targets, n_items, k)
    m[f"ild@{k}"] = inter_list_diversity(topk)
    m.update({f"share:{g}": float(s) for g, s in zip(genres, attribute_shares(topk, genre_matrix))})
    return m


def run_sweep(steerer: Steerer, inputs: list[np.ndarray], targets: np.ndarray, curves: list[Curve],
              values: np.ndarray, k: int = 10, max_rows: int = 8192, progress: bool = True
              ) -> tuple[pd.DataFrame, dict, dict]:
    """One row per (curve, value); the unsteered baselines (original and SAE-reconstructed); per-user
    NDCG of every (attribute, curve, value) for paired confidence intervals."""
    items = steerer.items
    genres = items.genres
    G = items.attribute_matrix(genres)
    n = steerer.model.n_items
    base = {
        "original": list_metrics(steerer.recommend(inputs, None, k=k, splice="delta"), targets, n, G, genres, k),
        "reconstructed": list_metrics(steerer.recommend(inputs, None, k=k, splice="reconstruction"),
                                      targets, n, G, genres, k),
    }
    rows, per_user = [], {}
    bar = Progress("steering sweep", len(curves) * len(values) * len(inputs), "lists", enabled=progress)
    for c in curves:
        variants = [[Edit(c.attribute, float(v), c.mode, "last", c.method)] for v in values]
        resolved = steerer.resolve(variants[0][0])
        topk = steerer.recommend_variants(inputs, variants, k=k, splice=c.splice, max_rows=max_rows)
        for i, v in enumerate(values):
            m = list_metrics(topk[:, i], targets, n, G, genres, k)
            per_user[(c.attribute, c.name, float(v))] = user_ndcg(topk[:, i], targets)
            rows.append({"attribute": c.attribute, "method": c.method, "mode": c.mode, "splice": c.splice,
                         "curve": c.name, "target": resolved.index, "value": float(v),
                         "target_share": m[f"share:{c.attribute}"] if c.attribute in genres else np.nan, **m})
        bar.update(len(values) * len(inputs), extra=f"{c.attribute} {c.name}")
    base["per_user_ndcg"] = user_ndcg(steerer.recommend(inputs, None, k=k), targets)
    return pd.DataFrame(rows), base, per_user


def user_ndcg(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    rank = target_ranks(topk, targets)
    return np.where(rank >= 0, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)


def bootstrap_drop(base: np.ndarray, steered: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% paired-bootstrap interval (users resampled) of the relative NDCG drop 1 - steered/base."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(n, len(base)))
    b, s = base[idx].mean(1), steered[idx].mean(1)
    drop = 1 - s / np.maximum(b, 1e-12)
    return float(np.quantile(drop, 0.025)), float(np.quantile(drop, 0.975))


def summarise(table: pd.DataFrame, base: dict, per_user: dict, k: int = 10, lift_at: float = 5.0,
              safe: float = 2.0) -> list[dict]:
    """Per curve: Spearman(value, target share), share at +``lift_at`` vs unsteered, worst NDCG drop at
    |value| <= ``safe`` (relative to the original model, with a paired-bootstrap 95% interval: a few
    hundred test users make NDCG noisy), and whether each must-show target holds."""
    out = []
    ndcg0 = base["original"][f"ndcg@{k}"]
    for (attr, curve), g in table.groupby(["attribute", "curve"], sort=False):
        g = g.sort_values("value")
        share0 = base["original"].get(f"share:{attr}", np.nan)
        rho = float(spearmanr(g["value"], g["target_share"]).statistic) if g["target_share"].nunique() > 1 else 0.0
        at = g.loc[np.isclose(g["value"], lift_at), "target_share"]
        lift = float(at.iloc[0] / share0) if len(at) and share0 > 0 else np.nan
        near = g[g["value"].abs() <= safe + 1e-9]
        drop = float(1 - near[f"ndcg@{k}"].min() / ndcg0) if len(near) and ndcg0 > 0 else np.nan
        worst = float(near.loc[near[f"ndcg@{k}"].idxmin(), "value"]) if len(near) else np.nan
        ci = (bootstrap_drop(base["per_user_ndcg"], per_user[(attr, curve, worst)])
              if (attr, curve, worst) in per_user else (np.nan, np.nan))
        out.append({
            "attribute": attr, "curve": curve, "target": int(g["target"].iloc[0]),
            "spearman": rho, "unsteered_share": share0, f"share_at_{lift_at:g}": float(at.iloc[0]) if len(at) else np.nan,
            "lift": lift, f"max_ndcg_drop_abs_le_{safe:g}": drop, "worst_value": worst,
            "ndcg_drop_ci95": list(ci),
            "monotone_ok": rho >= 0.9, "lift_ok": bool(lift >= 3.0), "ndcg_ok": bool(drop <= 0.10),
        })
    return out
