"""RUN/saeeval/sparse_probing.png and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import save_figure, write_text
from ..layout import A


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def plot(out: Path, probing: pd.DataFrame, absorb: pd.DataFrame, feats: pd.DataFrame, min_conf: float) -> str:
    """Three panels: mean held-out AUC against k (SAE, neurons, full probe); absorption per
    attribute; the label-confidence histogram of live features with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for src, style in (("sae", "o-"), ("neurons", "s--")):
        g = probing[probing["source"] == src].groupby("k")["auc"].mean()
        ax[0].plot(g.index, g.values, style, label=src)
    full = probing[probing["source"] == "full_probe"]["auc"].mean()
    ax[0].axhline(full, color="gray", ls=":", label="full linear probe")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("k (units chosen by class-mean difference)")
    ax[0].set_ylabel("mean held-out AUC over attributes")
    ax[0].legend()
    ax[0].set_title("k-sparse probing")
    a = absorb.sort_values("absorption_fraction", ascending=False)
    ax[1].barh(a["attribute"], a["absorption_fraction"].fillna(0), label="absorption fraction")
    ax[1].barh(a["attribute"], a["full_absorption_rate"].fillna(0), alpha=0.6, label="full absorption")
    ax[1].invert_yaxis()
    ax[1].tick_params(axis="y", labelsize=7)
    ax[1].legend()
    ax[1].set_title("absorption (held-out users)")
    alive = feats[feats["firing_frequency"] > 0]["label_confidence"]
    ax[2].hist(alive, bins=np.linspace(0, 1, 41))
    ax[2].axvline(min_conf, color="red", ls="--", label=f"threshold {min_conf:g}")
    ax[2].set_xlabel("label confidence (held-out F1 of 'fires on items with the label')")
    ax[2].set_ylabel("features")
    ax[2].legend()
    ax[2].set_title("metadata prediction")
    fig.tight_layout()
    name = Path(A.EVAL_PLOT).name        # the browser copies A.EVAL_PLOT
    save_figure(fig, out / name, dpi=110)
    plt.close(fig)
    return name


def write_report(out: Path, s: dict, probing: pd.DataFrame, absorb: pd.DataFrame, feats: pd.DataFrame) -> None:
    img = plot(out, probing, absorb, feats, s["min_label_confidence"])
    ks = [str(k) for k in s["k_values"]]
    lines = ["# SAE evaluation", "",
             f"{s['sae']['kind']} SAE x{s['sae']['n_latents']} on `{s['layer']}`; {s['positions']:,} test positions "
             f"(probes fitted on users with even ids, scored on odd ids; {s['sample_rows']:,} positions sampled); "
             f"{s['seconds']:.1f} s.", "",
             "## k-sparse probing (mean held-out AUC / F1 over attributes)", "",
             "| source | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for src in ("sae", "neurons"):
        row = s["probing"].get(src, {})
        lines.append(f"| {src} | " + " | ".join(
            f"{fmt(row.get(k, {}).get('auc'))} / {fmt(row.get(k, {}).get('f1'))}" for k in ks) + " |")
    full = next(iter(s["probing"].get("full_probe", {}).values()), {})
    lines += ["", f"Full linear probe on all neurons: AUC {fmt(full.get('auc'))}, F1 {fmt(full.get('f1'))}. "
                  f"The best SAE latent beats the best neuron (k=1 AUC) on {fmt(s['k1_sae_beats_neurons_genres'])} "
                  f"of {s['k1_genres_compared']} genres.", "",
              f"Absorption: mean absorption fraction {fmt(s['mean_absorption_fraction'])}, full absorption rate "
              f"{fmt(s['mean_full_absorption_rate'])}.", "",
              f"Label confidence (held-out F1 of 'fires on items with its label') over {s['alive_features']} live "
              f"features: mean {fmt(s['mean_label_confidence'])}; {fmt(s['labelled_fraction'])} reach "
              f"{s['min_label_confidence']:g} and keep their label, the others are shown unlabelled.", ""]
    if "planted" in s:
        p = s["planted"]
        lines += [f"Planted genres: MCC SAE {fmt(p['mcc_sae'])} vs neurons {fmt(p['mcc_neurons'])}; genre directions "
                  f"recovered at cosine >= {p['threshold']:g}: SAE {fmt(p['recovered_fraction_sae'])}, neuron axes "
                  f"{fmt(p['recovered_fraction_neuron_axes'])}.", ""]
    lines += [f"![suite]({img})", "", "## Per attribute", "",
              "| attribute | SAE k=1 AUC | neuron k=1 AUC | full probe AUC | main latents | absorption | full absorption |",
              "|---|---|---|---|---|---|---|"]
    k1 = probing[probing["k"] == 1].pivot(index="attribute", columns="source", values="auc")
    fp = probing[probing["source"] == "full_probe"].set_index("attribute")["auc"]
    for r in absorb.itertuples():
        lines.append(f"| {r.attribute} | {fmt(k1.get('sae', {}).get(r.attribute))} | "
                     f"{fmt(k1.get('neurons', {}).get(r.attribute))} | {fmt(fp.get(r.attribute))} | "
                     f"{', '.join(f'#{j}' for j in r.main_latents)} | {fmt(r.absorption_fraction)} | "
                     f"{fmt(r.full_absorption_rate)} |")
    write_text(out / "report.md", "\n".join(lines) + "\n")
