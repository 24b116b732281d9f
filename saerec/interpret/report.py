"""Plots (paper Figures 2, 4, 5) and RUN/interpret/report.md."""

from __future__ import annotations

import numpy as np

from ..atomic import save_figure, write_text
from ..rundir import RunDir


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap_top_features(S, attrs, genres, per_attr, path) -> None:
    """Figure 2: for each genre's top feature (rows), its correlation with every genre (columns)."""
    plt = _plt()
    gi = [attrs.index(g) for g in genres]
    rows = per_attr.set_index("attribute").loc[genres, "sae_feature"].to_numpy()
    M = S.correlation[np.ix_(rows, gi)]
    fig, ax = plt.subplots(figsize=(0.45 * len(genres) + 3, 0.4 * len(genres) + 2))
    im = ax.imshow(M, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(genres)), genres, rotation=90)
    ax.set_yticks(range(len(genres)), [f"{g} (#{f})" for g, f in zip(genres, rows)])
    ax.set_xlabel("genre")
    ax.set_ylabel("top feature of genre (#id)")
    fig.colorbar(im, ax=ax, label="correlation")
    ax.set_title("Correlation of each genre's top SAE feature with all genres")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def bars_sae_vs_neurons(per_attr, genres, path) -> None:
    """Figure 4: top-feature correlation per genre, SAE vs raw neurons."""
    plt = _plt()
    g = per_attr.set_index("attribute").loc[genres].sort_values("sae_correlation", ascending=False)
    x = np.arange(len(g))
    fig, ax = plt.subplots(figsize=(0.5 * len(g) + 3, 4))
    ax.bar(x - 0.2, g["sae_correlation"], 0.4, label="SAE feature")
    ax.bar(x + 0.2, g["neuron_correlation"], 0.4, label="raw neuron")
    ax.set_xticks(x, g.index, rotation=90)
    ax.set_ylabel("max correlation")
    ax.legend()
    ax.set_title("Best SAE feature vs best neuron per genre")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def histograms(stats, attrs, per_attr, names, path) -> None:
    """Figure 5: activation histograms of a genre's top feature, attribute present vs absent (AUC sample)."""
    plt = _plt()
    f, y = (t.numpy() for t in stats.sample_rows())
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        a = attrs.index(name)
        j = int(per_attr.set_index("attribute").loc[name, "sae_feature"])
        v = f[:, j]
        hi = float(v.max()) if v.max() > 0 else 1.0
        bins = np.linspace(0, hi, 40)
        ax.hist(v[y[:, a]], bins=bins, alpha=0.6, density=True, label="present")
        ax.hist(v[~y[:, a]], bins=bins, alpha=0.6, density=True, label="absent")
        ax.set_yscale("log")
        ax.set_title(f"{name}: feature #{j}")
        ax.set_xlabel("activation")
    axes[0][0].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def write_plots_and_report(run: RunDir, S, N, attrs, genres, per_attr, catalog, items, sae_stats, summary) -> None:
    out = run.root / "interpret"
    if genres:
        heatmap_top_features(S, attrs, genres, per_attr, out / "fig2_top_feature_genre_correlation.png")
        bars_sae_vs_neurons(per_attr, genres, out / "fig4_sae_vs_neurons.png")
        shown = [g for g in ("Horror", "Sci-Fi", "Animation", "Children", "Western") if g in genres] or genres[:4]
        histograms(sae_stats, attrs, per_attr, shown[:4], out / "fig5_histograms.png")
    title = items.set_index("item_id")["title"]
    lines = ["# Interpretation report", "",
             f"Layer `{summary['layer']}`, {summary['features']} SAE features ({summary['alive_features']} fire on test "
             f"users), {summary['positions']:,} test positions (AUC on {summary['auc_sample_rows']:,} sampled).", "",
             f"- mean top-feature correlation over genres: **SAE {summary['mean_top_correlation_sae']:.3f}** vs "
             f"raw neurons {summary['mean_top_correlation_neurons']:.3f}",
             f"- over all attributes (genres, decades, popularity): SAE "
             f"{summary['mean_top_correlation_sae_all_attributes']:.3f} vs neurons "
             f"{summary['mean_top_correlation_neurons_all_attributes']:.3f}", "",
             "![Figure 2](fig2_top_feature_genre_correlation.png)", "", "![Figure 4](fig4_sae_vs_neurons.png)", "",
             "![Figure 5](fig5_histograms.png)", "",
             "## Top feature per attribute (paper Table 2)", "",
             "| attribute | share | SAE feature | corr | AUC | sensitivity | precision | neuron corr |",
             "|---|---|---|---|---|---|---|---|"]
    for r in per_attr.itertuples():
        lines.append(f"| {r.attribute} | {r.share:.3f} | #{r.sae_feature} | {r.sae_correlation:.3f} | {r.sae_auc:.3f} | "
                     f"{r.sae_sensitivity:.3f} | {r.sae_precision:.3f} | {r.neuron_correlation:.3f} |")
    lines += ["", "## Features of the top genres", ""]
    for r in per_attr[per_attr["is_genre"]].head(8).itertuples():
        c = catalog.iloc[int(r.sae_feature)]
        promoted = ", ".join(str(title.get(i, i)) for i in list(c["promoted_items"])[:5])
        top_items = ", ".join(str(title.get(i, i)) for i in list(dict.fromkeys(c["top_items"]))[:5])
        lines += [f"**#{r.sae_feature} ({c['label']}, corr {c['label_correlation']:.2f}, fires on "
                  f"{c['firing_frequency']:.1%} of positions)**", f"- top-activating items: {top_items}",
                  f"- promotes: {promoted}", ""]
    write_text(out / "report.md", "\n".join(lines) + "\n")
