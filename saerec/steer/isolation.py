"""Steering isolation: does steering one attribute move that attribute only?

For each swept curve and steered attribute a, at one value v (the lift value, +5 by default), the
change of every genre's share of the top-k against the unsteered model gives one row of an
off-target matrix (steered attribute x genre). The isolation score of a is its own change over the
mean absolute change of the other genres' shares: high when steering a moves a and little else,
near or below 1 when it drags other genres along (Animation with Children, say), negative when a
falls. SAEBench's targeted-concept-removal idea, on recommendation lists instead of a classifier.

Reuses the sweep table (steer/sweep.parquet): no steering is re-run. Writes
``isolation.parquet`` (curve, attribute, genre, share change), ``isolation.json`` (score per curve
and attribute, and the matrix) and ``isolation.png`` (the matrix of the main curve as a heatmap).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_parquet, write_text
from ..layout import A
from ..rundir import json_ready


def isolation_matrix(table: pd.DataFrame, unsteered: dict, genres: list[str], curve: str,
                     value: float = 5.0) -> pd.DataFrame:
    """Steered attribute (rows, in sweep order) x genre (columns): share at ``value`` minus the
    unsteered share. Attributes without a row at ``value`` are left out."""
    t = table[(table["curve"] == curve) & np.isclose(table["value"], value)]
    rows = {}
    for a, g in t.groupby("attribute", sort=False):
        rows[a] = [float(g[f"share:{x}"].iloc[0]) - float(unsteered[f"share:{x}"]) for x in genres]
    return pd.DataFrame.from_dict(rows, orient="index", columns=genres)


def isolation_scores(M: pd.DataFrame) -> pd.DataFrame:
    """Per steered attribute: own share change, mean absolute change of the other genres' shares,
    and their ratio (NaN when the attribute is not a genre column; inf when nothing else moved)."""
    out = []
    for a, row in M.iterrows():
        own = float(row[a]) if a in row.index else np.nan
        others = row.drop(a, errors="ignore").abs()
        off = float(others.mean()) if len(others) else np.nan
        score = own / off if off > 0 else (np.inf if own > 0 else np.nan)
        worst = str(others.idxmax()) if len(others) else None
        out.append({"attribute": a, "own_change": own, "mean_abs_off_target": off, "isolation": score,
                    "worst_off_target": worst, "worst_off_target_change": float(row[worst]) if worst else np.nan})
    return pd.DataFrame(out)


def write_isolation(table: pd.DataFrame, base: dict, genres: list[str], out: Path, main: str,
                    value: float = 5.0) -> dict:
    """Every curve's matrix and scores to Parquet + JSON, the ``main`` curve's matrix as a PNG.
    ``value``: where the shares are compared; the sweep's largest value when it is not in the grid."""
    if not np.isclose(table["value"], value).any():
        value = float(table["value"].max())
    unsteered = base["original"]
    long, per_curve = [], {}
    for curve in dict.fromkeys(table["curve"]):
        M = isolation_matrix(table, unsteered, genres, curve, value)
        if M.empty:
            continue
        S = isolation_scores(M)
        for a, row in M.iterrows():
            long += [{"curve": curve, "attribute": a, "genre": x, "value": value, "share_change": float(row[x])}
                     for x in genres]
        per_curve[curve] = {"scores": json_ready(S.to_dict("records")), "matrix": M.to_dict(orient="index")}
    write_parquet(pd.DataFrame(long, columns=["curve", "attribute", "genre", "value", "share_change"]),
                  out / "isolation.parquet")
    summary = {"value": value, "main_curve": main, "curves": per_curve}
    write_text(out / Path(A.ISOLATION).name, json.dumps(summary, indent=2))   # the browser reads A.ISOLATION
    if main in per_curve:
        heatmap(pd.DataFrame.from_dict(per_curve[main]["matrix"], orient="index")[genres],
                out / Path(A.ISOLATION_PLOT).name, f"Share change at value {value:g} ({main})")
    return summary


def heatmap(M: pd.DataFrame, path: Path, title: str) -> None:
    from ..interpret.report import _plt
    from .plots import _save

    plt = _plt()
    lim = float(np.nanmax(np.abs(M.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(0.42 * M.shape[1] + 3, 0.42 * M.shape[0] + 2))
    im = ax.imshow(M.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(M.shape[1]), M.columns, rotation=70, fontsize=7)
    ax.set_yticks(range(M.shape[0]), [f"steer {a}" for a in M.index], fontsize=8)
    for i, a in enumerate(M.index):
        if a in M.columns:
            ax.add_patch(plt.Rectangle((list(M.columns).index(a) - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5))
    fig.colorbar(im, ax=ax, label="share change in top-k")
    ax.set_title(title, fontsize=9)
    _save(fig, path, plt)
