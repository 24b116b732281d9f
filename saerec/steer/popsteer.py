"""PopSteer (Ahmadov & Mansoury, RecSys'25, arXiv 2508.17297): reduce popularity bias by steering
the SAE features that tell popular-only users from niche-only users.

Why synthetic users: a real history mixes popular and niche items, which dilutes any one feature's
link to a user's taste for popularity. Users made only of head items and only of tail items make
the contrast explicit, and Cohen's d ranks features by how far apart the two groups' activations
lie in units of their spread.

1. :func:`synthetic_histories`: ``n`` histories of ``length`` items drawn from the head (the top 20%
   of items by training count, :func:`~saerec.eval.metrics.popularity_arrays`) and ``n`` from the
   tail (items seen in training outside the head).
2. :func:`effect_sizes`: the SAE codes at the last step of both groups -> per feature Cohen's d
   (popular minus niche, pooled std) and the feature's std over both groups.
3. :func:`popsteer_edits`: the ``top_n`` features by |d| move by ``-sign(d) * w * std`` (``add`` at
   the last step) with ``w = alpha * |d| / max|d|``: ``alpha = 0`` is the unsteered model; a larger
   alpha damps what popular-only users share and lifts what niche-only users share.
4. :func:`popsteer_curve`: per alpha, the steering evaluation's list metrics (NDCG@k pooled over
   the test points, long-tail share, Gini index, novelty, coverage) and the NDCG drop with its
   paired-bootstrap interval.
5. :func:`reference_curves`: the same metrics for two SAE-free references on the same points
   (:mod:`saerec.steer.popref`), so the curve is read against what the recommender's own ranking
   and the best constant state shift give.
6. :func:`per_user_curve`: the same features with values fitted per user to the head penalty's lists
   (:mod:`saerec.steer.popfit`) instead of one value per feature for everyone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..eval.metrics import popularity_arrays, row_ndcg
from ..train.batching import pad_inputs
from .edits import ResolvedEdit
from .intervene import Steerer
from .popfit import PerUserConfig, per_user_lists
from .popref import reference_lists
from .sweep import Points, bootstrap_drop, list_metrics


@dataclass(frozen=True)
class PopSteerConfig:
    users_per_group: int = 500       # synthetic popular-only and niche-only users each
    length: int = 50                 # items per synthetic history
    top_n: int | None = None         # features steered (largest |d| first); None: every feature with d != 0
    head: float = 0.2                # the popularity head: this fraction of items by training count
    seed: int = 0


def synthetic_histories(train_count: np.ndarray, cfg: PopSteerConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(popular-only, niche-only) histories of dense indices (items 1..V), each ``cfg.length`` items
    drawn without replacement (with replacement when a group has fewer items than that)."""
    is_head, _ = popularity_arrays(train_count, cfg.head)
    seen = np.concatenate([[False], np.asarray(train_count) > 0])
    head = np.flatnonzero(is_head)
    tail = np.flatnonzero(~is_head & seen)
    if len(head) == 0 or len(tail) == 0:
        raise ValueError("popularity steering needs items both in and outside the popularity head")
    rng = np.random.default_rng(cfg.seed)

    def draw(pool: np.ndarray) -> list[np.ndarray]:
        return [rng.choice(pool, cfg.length, replace=len(pool) < cfg.length).astype(np.int64)
                for _ in range(cfg.users_per_group)]

    return draw(head), draw(tail)


@torch.inference_mode()
def last_codes(steerer: Steerer, histories: list[np.ndarray], batch: int = 256) -> np.ndarray:
    """(n, n_latents) SAE codes of the steering layer's state at each history's last step."""
    out = []
    for i in range(0, len(histories), batch):
        items, lengths = pad_inputs([steerer.truncate(h) for h in histories[i:i + batch]])
        state = steerer.model.prefill_last(items, lengths, steerer.layer).state
        out.append(steerer.sae.encode(steerer.norm(state)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, steerer.sae.cfg.n_latents), np.float32)


def cohens_d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column, (mean a - mean b) / pooled std; 0 where both groups are constant.

    >>> cohens_d(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]), np.array([[4.0, 5.0], [5.0, 5.0], [6.0, 5.0]]))
    array([-3.,  0.])
    """
    na, nb = len(a), len(b)
    pooled = np.sqrt(((na - 1) * a.var(0, ddof=1) + (nb - 1) * b.var(0, ddof=1)) / max(na + nb - 2, 1))
    diff = a.mean(0) - b.mean(0)
    return np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), 0.0)


def effect_sizes(steerer: Steerer, popular: list[np.ndarray], niche: list[np.ndarray]) -> pd.DataFrame:
    """One row per feature: Cohen's d (popular minus niche), its std over both groups, both means."""
    a, b = last_codes(steerer, popular), last_codes(steerer, niche)
    both = np.concatenate([a, b])
    return pd.DataFrame({"feature": np.arange(a.shape[1]), "d": cohens_d(a, b), "std": both.std(0),
                         "mean_popular": a.mean(0), "mean_niche": b.mean(0)})


def steered_features(effects: pd.DataFrame, top_n: int | None = None) -> pd.DataFrame:
    """The features PopSteer moves: d != 0, largest |d| first, the first ``top_n`` of them.

    >>> steered_features(pd.DataFrame({"feature": [0, 1, 2], "d": [1.0, -3.0, 0.0]}))["feature"].tolist()
    [1, 0]
    """
    e = effects[effects["d"] != 0]
    e = e.reindex(e["d"].abs().sort_values(ascending=False, kind="stable").index)
    return e.head(top_n) if top_n is not None else e


def popsteer_edits(effects: pd.DataFrame, alpha: float, top_n: int | None = None,
                   labels=None) -> list[ResolvedEdit]:
    """The edits of one alpha: the ``top_n`` features by |d| each ``add`` ``-sign(d) * w * std`` at
    the last step, ``w = alpha * |d| / max|d|``. ``labels(feature)`` names them (default ``#j``).

    >>> e = pd.DataFrame({"feature": [0, 1, 2], "d": [2.0, -1.0, 0.0], "std": [1.0, 2.0, 3.0]})
    >>> [(x.index, x.value) for x in popsteer_edits(e, 1.0)]
    [(0, -1.0), (1, 1.0)]
    >>> [(x.index, x.value) for x in popsteer_edits(e, 3.0, top_n=1)]
    [(0, -3.0)]
    """
    e = steered_features(effects, top_n)
    if alpha == 0 or e.empty:
        return []
    w = alpha * e["d"].abs() / e["d"].abs().max()
    values = -np.sign(e["d"]) * w * e["std"]
    return [ResolvedEdit("sae", int(j), float(v), "add", "last", labels(int(j)) if labels else f"#{j}")
            for j, v in zip(e["feature"], values)]


def popsteer_curve(steerer: Steerer, points: Points, effects: pd.DataFrame, alphas: list[float],
                   top_n: int | None = None, k: int = 10, max_rows: int = 8192) -> tuple[pd.DataFrame, dict]:
    """One row per alpha (list metrics, NDCG drop vs alpha 0 with its 95% interval over users) and a
    summary: the largest long-tail lift whose pooled NDCG@k drop stays within 10%."""
    labels = steerer.catalog.label if steerer.catalog is not None else None
    values = list(dict.fromkeys([0.0, *map(float, alphas)]))     # alpha 0 (the baseline) first, once
    variants = [popsteer_edits(effects, a, top_n, labels) for a in values]
    topk = steerer.recommend_variants(points.inputs, variants, k=k, max_rows=max_rows)
    rows = curve_rows(steerer, points, topk, row_ndcg(topk[:, 0], points.targets), k)
    table = with_lift(pd.DataFrame([{"alpha": float(a), "features": len(v), **r}
                                    for a, v, r in zip(values, variants, rows)]), k)
    best = best_within(table, k)
    summary = {"alphas": table["alpha"].tolist(), "unsteered_long_tail": float(table[f"long_tail@{k}"].iloc[0]),
               "best_alpha_within_10pct_ndcg": float(best["alpha"]), **_best_summary(best, k),
               "gini_unsteered": float(table[f"gini@{k}"].iloc[0])}
    return table, summary


def per_user_curve(steerer: Steerer, points: Points, effects: pd.DataFrame, top_n: int | None = None,
                   k: int = 10, cfg: PerUserConfig = PerUserConfig(), head: float = 0.2) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Per-user PopSteer (:mod:`saerec.steer.popfit`) on the same points and features as the curve:
    one row per head penalty (column ``strength``, shared with the other curves; 0: unsteered), its
    best row within a 10% NDCG drop, and ``effects`` with each feature's mean fitted value and mean
    |value| over users and penalties."""
    chosen = steered_features(effects, top_n)
    is_head, _ = popularity_arrays(steerer.items.items["train_count"].to_numpy(), head)
    topk, facts = per_user_lists(steerer, points.inputs, chosen["feature"].to_numpy(), is_head, cfg, k)
    rows = curve_rows(steerer, points, topk, row_ndcg(topk[:, 0], points.targets), k)
    table = with_lift(pd.DataFrame([{"strength": float(s), "features": len(chosen), **r}
                                    for s, r in zip((0.0, *cfg.penalties), rows)]), k)
    best = best_within(table, k)
    summary = {"best_strength_within_10pct_ndcg": float(best["strength"]), **_best_summary(best, k),
               "penalties": list(cfg.penalties), "features": len(chosen), "state_rms": facts["state_rms"],
               "median_p_at_k": facts["median_p_at_k"]}
    values = pd.DataFrame({"feature": chosen["feature"].to_numpy(), "per_user_mean_value": facts["mean_value"],
                           "per_user_mean_abs_value": facts["mean_abs_value"]})
    return table, summary, effects.merge(values, on="feature", how="left").fillna(
        {"per_user_mean_value": 0.0, "per_user_mean_abs_value": 0.0})


def curve_rows(steerer: Steerer, points: Points, topk: np.ndarray, base: np.ndarray, k: int) -> list[dict]:
    """For each variant of ``topk`` (U, n, k): its list metrics and its pooled NDCG@k drop against
    the per-point NDCG ``base``, with the paired-bootstrap 95% interval over users."""
    items = steerer.items
    n = steerer.model.n_items
    pop = popularity_arrays(items.items["train_count"].to_numpy())
    genres = items.genres
    G = items.attribute_matrix(genres)
    rows = []
    for i in range(topk.shape[1]):
        m = list_metrics(topk[:, i], points, n, G, genres, k, pop)
        steered = row_ndcg(topk[:, i], points.targets)
        lo, hi = bootstrap_drop(base, steered, points.owner)
        rows.append({"ndcg_drop": 1 - steered.sum() / max(base.sum(), 1e-12), "ndcg_drop_ci_low": lo,
                     "ndcg_drop_ci_high": hi,
                     **{c: m[c] for c in (f"ndcg@{k}", f"hit_rate@{k}", f"coverage@{k}", f"long_tail@{k}",
                                          f"gini@{k}", f"novelty@{k}", f"ndcg@{k}_last")}})
    return rows


def with_lift(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """``table`` with ``long_tail_lift``: each row's long-tail share over the first (unsteered) row's.

    >>> with_lift(pd.DataFrame({"long_tail@10": [0.25, 0.375, 0.625]}), 10)["long_tail_lift"].tolist()
    [1.0, 1.5, 2.5]
    """
    lt0 = table[f"long_tail@{k}"].iloc[0]
    return table.assign(long_tail_lift=table[f"long_tail@{k}"] / lt0 if lt0 > 0 else np.nan)


def best_within(table: pd.DataFrame, k: int, max_drop: float = 0.10) -> pd.Series:
    """The row with the largest long-tail lift whose NDCG@k drop is at most ``max_drop`` (the first
    row when none is), its lift included.

    >>> t = pd.DataFrame({"long_tail@10": [0.25, 0.375, 0.625], "ndcg_drop": [0.0, 0.05, 0.2]})
    >>> float(best_within(t, 10)["long_tail_lift"]), "long_tail_lift" in t
    (1.5, False)
    """
    t = with_lift(table, k)
    ok = t[t["ndcg_drop"] <= max_drop]
    return ok.loc[ok["long_tail_lift"].idxmax()] if len(ok) else t.iloc[0]


def _best_summary(best: pd.Series, k: int) -> dict:
    return {"long_tail_lift": float(best["long_tail_lift"]), "ndcg_drop": float(best["ndcg_drop"]),
            "ndcg_drop_ci95": [float(best["ndcg_drop_ci_low"]), float(best["ndcg_drop_ci_high"])],
            "gini_at_best": float(best[f"gini@{k}"]), "long_tail_doubled_within_10pct": bool(best["long_tail_lift"] >= 2.0)}


def reference_curves(steerer: Steerer, points: Points, k: int = 10) -> tuple[pd.DataFrame, dict]:
    """The SAE-free references of :mod:`saerec.steer.popref` on the same points: one row per
    (method, strength) with the same metrics, and per method its best row within a 10% NDCG drop."""
    tc = steerer.items.items["train_count"].to_numpy()
    is_head, _ = popularity_arrays(tc)
    histories = [steerer.truncate(h) for h in points.inputs]
    topk, specs, facts = reference_lists(steerer.model, steerer.layer, histories, is_head, tc > 0, k)
    rows = curve_rows(steerer, points, topk, row_ndcg(topk[:, 0], points.targets), k)
    table = pd.DataFrame([{**s, **r} for s, r in zip(specs, rows)])
    summary = {**facts}
    for method in ("head_penalty", "linear_shift"):
        part = pd.concat([table.iloc[:1], table[table["method"] == method]]).reset_index(drop=True)
        best = best_within(part, k)
        summary[method] = {"best_strength_within_10pct_ndcg": float(best["strength"]), **_best_summary(best, k)}
    return with_lift(table, k), summary


def plot_curve(table: pd.DataFrame, k: int, path, references: pd.DataFrame | None = None,
               per_user: pd.DataFrame | None = None) -> None:
    """Long-tail share, Gini and NDCG@k against alpha (the trade-off a person picks alpha from), and
    the long-tail lift against the NDCG drop beside the SAE-free references (what the curve is
    worth: the issue's bar is 2x at a 10% drop)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import save_figure

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    ax[0].plot(table["alpha"], table[f"long_tail@{k}"], "o-", label="long-tail share")
    ax[0].plot(table["alpha"], table[f"gini@{k}"], "s-", label="Gini index")
    ax[0].set_xlabel("alpha"), ax[0].legend(), ax[0].set_title(f"top-{k} lists")
    ax[1].plot(table["alpha"], table[f"ndcg@{k}"], "o-", color="C2")
    ax[1].fill_between(table["alpha"], table[f"ndcg@{k}"].iloc[0] * (1 - table["ndcg_drop_ci_high"]),
                       table[f"ndcg@{k}"].iloc[0] * (1 - table["ndcg_drop_ci_low"]), alpha=0.2, color="C2")
    ax[1].set_xlabel("alpha"), ax[1].set_title(f"NDCG@{k} (pooled, 95% interval)")
    ax[2].plot(100 * table["ndcg_drop"], table["long_tail_lift"], "o-", label="PopSteer")
    if per_user is not None:
        ax[2].plot(100 * per_user["ndcg_drop"], per_user["long_tail_lift"], "^-", label="PopSteer per user")
    if references is not None:
        origin = references[references["method"] == "unsteered"]
        for method, part in references[references["method"] != "unsteered"].groupby("method"):
            part = pd.concat([origin, part])
            ax[2].plot(100 * part["ndcg_drop"], part["long_tail_lift"], "s--", label=method.replace("_", " "))
    ax[2].axvline(10, color="grey", lw=0.8), ax[2].axhline(2, color="grey", lw=0.8)
    ax[2].set_xlim(-1, 30), ax[2].set_xlabel(f"NDCG@{k} drop (%)"), ax[2].set_ylabel("long-tail share lift")
    ax[2].legend(fontsize=8), ax[2].set_title("trade-off")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def popsteer_run(run, alphas: list[float], cfg: PopSteerConfig = PopSteerConfig(), k: int = 10,
                 eval_positions: int = 10, references: bool = True,
                 per_user: PerUserConfig | None = PerUserConfig()) -> dict:
    """PopSteer on a finished run: effect sizes, the curve over ``alphas`` on the test users' last
    ``eval_positions`` predictions, written to ``RUN/steer/popsteer.{parquet,json,png}`` and
    ``popsteer_features.parquet``; with ``references``, the SAE-free reference curves on the same
    points (``popsteer_references.parquet``, and in the summary and the plot); returns the summary."""
    from ..atomic import write_parquet
    from ..rundir import A

    steerer = Steerer.from_run(run, probes=False)
    popular, niche = synthetic_histories(steerer.items.items["train_count"].to_numpy(), cfg)
    effects = effect_sizes(steerer, popular, niche)
    points = Points.of_test_users(run, steerer.model.max_len, eval_positions)
    table, summary = popsteer_curve(steerer, points, effects, alphas, cfg.top_n, k)
    refs, ref_summary = reference_curves(steerer, points, k) if references else (None, None)
    pu_table, pu_summary = None, None
    if per_user is not None:
        pu_table, pu_summary, effects = per_user_curve(steerer, points, effects, cfg.top_n, k, per_user, cfg.head)
    run.stage(A.STEER)
    write_parquet(effects, run.path(A.POPSTEER_FEATURES))
    write_parquet(table, run.path(A.POPSTEER))
    if refs is not None:
        write_parquet(refs, run.path(A.POPSTEER_REFERENCES))
    if pu_table is not None:
        write_parquet(pu_table, run.path(A.POPSTEER_PER_USER))
    plot_curve(table, k, run.path(A.POPSTEER).with_suffix(".png"), refs, pu_table)
    summary = {**summary, "config": cfg.__dict__, "users": points.users, "points": len(points.targets),
               "top_features": effects.reindex(effects["d"].abs().sort_values(ascending=False).index)
               .head(10)[["feature", "d"]].to_dict(orient="records")}
    if ref_summary is not None:
        summary["references"] = ref_summary
    if pu_summary is not None:
        summary["per_user"] = pu_summary
    run.write_json(A.POPSTEER_SUMMARY, summary)
    return {**summary, "table": table, "references_table": refs, "per_user_table": pu_table}
