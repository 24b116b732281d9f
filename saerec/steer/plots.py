"""Steering plots: genre shares vs value (paper Figure 8a), list metrics vs value (8b-d), SAE vs
probe (Figure 9) and the delta vs reconstruction splice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import save_figure
from ..interpret.report import _plt


def _save(fig, path: Path, plt) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _grid(n: int, plt, w: float = 3.6, h: float = 3.0):
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def genre_shares(table: pd.DataFrame, curve: str, genres: list[str], path: Path, others: int = 4) -> None:
    """Figure 8a: per attribute, the share of its genre and of the genres that move most."""
    plt = _plt()
    t = table[table["curve"] == curve]
    attrs = list(dict.fromkeys(t["attribute"]))
    fig, axes = _grid(len(attrs), plt)
    for ax, a in zip(axes, attrs):
        g = t[t["attribute"] == a].sort_values("value")
        span = {x: g[f"share:{x}"].max() - g[f"share:{x}"].min() for x in genres if x != a}
        shown = ([a] if a in genres else []) + sorted(span, key=span.get, reverse=True)[:others]
        for x in shown:
            ax.plot(g["value"], g[f"share:{x}"], lw=2.5 if x == a else 1.2, label=x)
        ax.set_title(f"{a} feature #{int(g['target'].iloc[0])}")
        ax.set_xlabel("feature value")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("share of genre in top-10")
    fig.suptitle(f"Genre shares while steering ({curve})")
    _save(fig, path, plt)


def list_metric_curves(table: pd.DataFrame, curve: str, base: dict, k: int, path: Path) -> None:
    """Figure 8b-d: NDCG, Coverage and inter-list diversity vs value, one line per attribute."""
    plt = _plt()
    t = table[table["curve"] == curve]
    keys = [f"ndcg@{k}", f"coverage@{k}", f"ild@{k}"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, keys):
        for a, g in t.groupby("attribute", sort=False):
            g = g.sort_values("value")
            ax.plot(g["value"], g[key], label=a)
        ax.axhline(base["original"][key], color="k", ls=":", lw=1, label="unsteered")
        ax.set_xlabel("feature value")
        ax.set_title(key)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Recommendation metrics while steering ({curve})")
    _save(fig, path, plt)


def compare_curves(table: pd.DataFrame, solid: str, dashed: str, path: Path, title: str) -> None:
    """Figure 9 (SAE solid, probe dashed) or delta vs reconstruction: target share vs value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (a, g) in enumerate(table.groupby("attribute", sort=False)):
        c = colors[i % len(colors)]
        for curve, ls in ((solid, "-"), (dashed, "--")):
            h = g[g["curve"] == curve].sort_values("value")
            if len(h):
                ax.plot(h["value"], h["target_share"], ls, color=c, label=a if ls == "-" else None)
    ax.plot([], [], "k-", label=solid)
    ax.plot([], [], "k--", label=dashed)
    ax.set_xlabel("value")
    ax.set_ylabel("share of the target genre in top-10")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path, plt)


def write_plots(table: pd.DataFrame, base: dict, genres: list[str], k: int, out: Path) -> list[str]:
    curves = list(dict.fromkeys(table["curve"]))
    written = []
    main = next((c for c in curves if c.startswith("sae/") and c.endswith("/delta")), curves[0])
    genre_shares(table, main, genres, out / "fig8a_genre_shares.png")
    list_metric_curves(table, main, base, k, out / "fig8bcd_metrics.png")
    written += ["fig8a_genre_shares.png", "fig8bcd_metrics.png"]
    recon = main.replace("/delta", "/reconstruction")
    if recon in curves:
        compare_curves(table, main, recon, out / "fig_delta_vs_reconstruction.png",
                       "Delta splice (solid) vs the paper's reconstruction splice (dashed)")
        written.append("fig_delta_vs_reconstruction.png")
    if "probe/add/delta" in curves and "sae/add/delta" in curves:
        compare_curves(table, "sae/add/delta", "probe/add/delta", out / "fig9_sae_vs_probe.png",
                       "Adding the SAE feature (solid) vs the probe direction (dashed)")
        written.append("fig9_sae_vs_probe.png")
    return written


def fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}" if isinstance(x, float) else str(x)
