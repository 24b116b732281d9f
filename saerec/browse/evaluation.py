"""The SAE evaluation page's data: what ``saerec sae-eval`` wrote to ``RUN/saeeval/``, as it wrote it.

Nothing is measured again here: the probing means come from ``summary.json``, the per-attribute
rows from ``probing.parquet`` and ``attributes.parquet``, each feature's label confidence from
``features.parquet`` (the same file :class:`~saerec.steer.catalog.FeatureCatalog` joins, so the
feature pages and this page agree). The only arithmetic is for display: the k=1 winner per
attribute (the comparison behind the summary's ``k1_sae_beats_neurons_genres``) and a histogram
of the stored confidences. The off-target matrix of ``saerec steer-eval`` (``steer/isolation.json``)
and the stages' PNGs are shown when the run has them; the PNGs are copied into the site
(:func:`images`), so the export still opens from file:// alone.

A run without sae-eval gets ``{"available": false, "command": ...}``: the page says which command
to run, and the rest of the site is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..layout import A
from ..rundir import RunDir, json_ready

IMAGES = {   # name in the site -> (artifact, caption)
    "img/sparse_probing.png": (A.EVAL_PLOT, "saerec sae-eval: k-sparse probing, absorption, label confidence"),
    "img/isolation.png": (A.ISOLATION_PLOT, "saerec steer-eval: share change of every genre when one is steered"),
}
CONFIDENCE_BINS = 20


def images(run: RunDir) -> dict:
    """The stages' PNGs the page embeds, site name -> file (only those the run has)."""
    return {name: run.path(rel) for name, (rel, _) in IMAGES.items() if run.has(rel)}


def evaluation_data(run: RunDir) -> dict:
    """The ``evaluation`` data file: every table of the page, or ``available: false`` before sae-eval."""
    if not run.has(A.EVAL_SUMMARY):
        return {"available": False, "command": f"saerec sae-eval --run {run.root}"}
    from ..data.attributes import genre_columns

    summary = run.read_json(A.EVAL_SUMMARY)
    probing = run.read_parquet(A.EVAL_PROBING)
    feats = run.read_parquet(A.EVAL_FEATURES)
    genres = set(genre_columns(run.read_parquet(A.CATALOGUE))) if run.has(A.CATALOGUE) else set()
    sae_time = run.path(A.SAE_WEIGHTS).stat().st_mtime if run.has(A.SAE_WEIGHTS) else 0.0
    return json_ready({
        "available": True,
        "outdated": run.path(A.EVAL_SUMMARY).stat().st_mtime < sae_time,    # the SAE was retrained since
        "summary": {k: v for k, v in summary.items() if k != "probing"},
        "probing": probing_table(summary),
        "attributes": attribute_rows(probing, run.read_parquet(A.EVAL_ATTRIBUTES), genres),
        "confidence": confidence(feats, summary["min_label_confidence"]),
        "planted": summary.get("planted"),
        "isolation": isolation(run.read_json(A.ISOLATION)) if run.has(A.ISOLATION) else None,
        "images": [{"src": name, "caption": IMAGES[name][1]} for name in images(run)],
    })


def probing_table(summary: dict) -> dict:
    """Mean held-out AUC and F1 over attributes per k, SAE and neurons, and the full probe: the
    summary's own means (``summary.json`` -> ``probing``)."""
    by = summary["probing"]
    rows = [{"k": k, **{src: by.get(src, {}).get(str(k)) for src in ("sae", "neurons")}} for k in summary["k_values"]]
    full = by.get("full_probe", {})
    units, value = next(iter(full.items()), (None, None))
    return {"rows": rows, "full_probe": None if value is None else {"units": int(units), **value}}


def _winner(sae: float, neuron: float) -> str | None:
    if not (math.isfinite(sae) and math.isfinite(neuron)):
        return None
    return "SAE" if sae > neuron else "neuron" if neuron > sae else "tie"


def attribute_rows(probing: pd.DataFrame, absorb: pd.DataFrame, genres: set) -> list[dict]:
    """Per attribute (``attributes.parquet``'s order): the k=1 probe of the best SAE latent and of
    the best neuron with the winner, the full probe's AUC, the main latents and absorption."""
    k1 = probing[probing["k"] == 1]
    sae, neu = (k1[k1["source"] == s].set_index("attribute") for s in ("sae", "neurons"))
    full = probing[probing["source"] == "full_probe"].set_index("attribute")
    nan = float("nan")
    out = []
    for r in absorb.itertuples(index=False):
        a = r.attribute
        s_auc = float(sae.at[a, "auc"]) if a in sae.index else nan
        n_auc = float(neu.at[a, "auc"]) if a in neu.index else nan
        out.append({
            "name": a, "is_genre": a in genres,
            "sae": {"auc": s_auc, "f1": sae.at[a, "f1"] if a in sae.index else None,
                    "latent": list(sae.at[a, "units"])[0] if a in sae.index else None},
            "neuron": {"auc": n_auc, "f1": neu.at[a, "f1"] if a in neu.index else None,
                       "index": list(neu.at[a, "units"])[0] if a in neu.index else None},
            "winner": _winner(s_auc, n_auc),
            "full_probe_auc": full.at[a, "auc"] if a in full.index else None,
            "main_latents": list(r.main_latents), "probe_auc": r.probe_auc, "rows": r.probe_true_positives,
            "absorption_fraction": r.absorption_fraction, "full_absorption_rate": r.full_absorption_rate,
        })
    return out


def confidence(feats: pd.DataFrame, threshold: float) -> dict:
    """Label confidence of the live features: a histogram of the stored values, and every live
    feature below the threshold (shown unlabelled), lowest confidence first."""
    alive = feats[feats["firing_frequency"] > 0]
    counts, edges = np.histogram(alive["label_confidence"].dropna(), bins=CONFIDENCE_BINS, range=(0.0, 1.0))
    low = alive[~alive["labelled"].astype(bool)].sort_values(["label_confidence", "label_correlation"],
                                                            ascending=[True, False])
    return {"threshold": threshold, "alive": len(alive), "labelled": int(alive["labelled"].astype(bool).sum()),
            "histogram": {"edges": edges, "counts": counts},
            "columns": ["feature", "label", "confidence", "correlation", "frequency"],
            "low": [[j, lbl, c, r, f] for j, lbl, c, r, f in zip(
                low["feature"], low["label"].astype(str), low["label_confidence"], low["label_correlation"],
                low["firing_frequency"])]}


def isolation(iso: dict) -> dict | None:
    """``steer/isolation.json``'s main curve: the scores and the steered attribute x genre matrix."""
    curves = iso.get("curves", {})
    name = iso.get("main_curve") if iso.get("main_curve") in curves else next(iter(curves), None)
    if name is None:
        return None
    matrix = curves[name]["matrix"]
    genres = list(next(iter(matrix.values()), {}))
    return {"value": iso.get("value"), "curve": name, "curves": list(curves), "scores": curves[name]["scores"],
            "genres": genres, "rows": [[a, [row.get(g) for g in genres]] for a, row in matrix.items()]}
