"""The SAE evaluation stage: RUN/{sae,activations/test,recommender/items.parquet} -> RUN/saeeval/.

SAEBench's reliable parts without an LLM, on test users, SAE next to raw neurons where it applies:
k-sparse probing, absorption (attribute probes in place of the first-letter task), metadata
prediction turned into each feature's label confidence, and on the synthetic data the recovery
of the planted genres. Three streaming passes over the test activations (sums; a bounded row
sample for the probes; absorption), so memory does not grow with the number of positions.

Writes ``probing.parquet`` (attribute, source sae/neurons/full_probe, k, AUC, F1, units),
``attributes.parquet`` (main latents, absorption), ``features.parquet`` (label, label confidence,
rule precision/recall), ``summary.json``, ``sparse_probing.png`` and ``report.md``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..atomic import write_parquet, write_text
from ..config import RunConfig
from ..data.attributes import attribute_columns, genre_columns
from ..errors import RunError
from ..contract import Stage
from ..rundir import A, RunDir
from ..sae.base import load_sae
from .collect import FoldSums, Reservoir, stream
from .suite import SPLIT_K, AbsorptionSums, candidate_latents, label_confidence, planted_recovery, sparse_probing

log = logging.getLogger("saerec.saeeval")


def _mean(s: pd.Series) -> float | None:
    s = s.dropna()
    return float(s.mean()) if len(s) else None


def summarise(probing: pd.DataFrame, absorb: pd.DataFrame, feats: pd.DataFrame, genres: list[str],
              k_values: list[int], min_conf: float) -> dict:
    """Headline numbers: mean held-out AUC/F1 per source and k; the share of genres where the best
    SAE latent beats the best neuron at k=1; mean absorption; label confidence of live features."""
    by = {}
    for (src, k), g in probing.groupby(["source", "k"]):
        by.setdefault(src, {})[str(k)] = {"auc": _mean(g["auc"]), "f1": _mean(g["f1"])}
    k1 = probing[probing["k"] == 1].pivot(index="attribute", columns="source", values="auc")
    gk1 = k1.loc[[g for g in genres if g in k1.index]] if genres else k1.iloc[:0]
    gk1 = gk1.dropna()
    alive = feats[feats["firing_frequency"] > 0]
    return {
        "k_values": k_values, "probing": by,
        "k1_sae_beats_neurons_genres": float((gk1["sae"] > gk1["neurons"]).mean()) if len(gk1) else None,
        "k1_genres_compared": int(len(gk1)),
        "mean_absorption_fraction": _mean(absorb["absorption_fraction"]),
        "mean_full_absorption_rate": _mean(absorb["full_absorption_rate"]),
        "alive_features": int(len(alive)),
        "mean_label_confidence": _mean(alive["label_confidence"]),
        "labelled_fraction": float((alive["label_confidence"] >= min_conf).mean()) if len(alive) else None,
        "min_label_confidence": min_conf,
    }


def run_passes(folder, sae, items: pd.DataFrame, attrs: list[str], k_values: list[int], sample_rows: int,
               batch_rows: int, probe_c: float = 1.0, seed: int = 0, printer=None, max_rows: int | None = None):
    """The three streaming passes (fold sums; the probes' row sample; absorption on held-out users)
    and the probes between them. ``max_rows``: stop each pass after that many positions (the same
    first ones every pass), so ``saerec tune`` can score every trial on a bounded sample."""
    m = sae.cfg.n_latents
    k_max = min(m, max(max(k_values, default=1), SPLIT_K))

    def positions(what: str):
        return stream(folder, sae, items, attrs, batch_rows, what, printer, max_rows=max_rows)

    secs = {}
    t = time.perf_counter()
    sums = FoldSums(m, sae.d_in, len(attrs))                # pass 1: exact sums per fold
    for b in positions("sae-eval 1/3 sums"):
        sums.update(b)
    if float(sums.n.min()) == 0:
        raise RunError(f"{folder}: the test users fall in one fold only (user_id % 2); sae-eval needs both")
    secs["sums"] = time.perf_counter() - t
    cand = candidate_latents(sums, k_max)
    keep = Reservoir(sample_rows, np.unique(cand), seed=seed)   # pass 2: the probes' rows
    for b in positions("sae-eval 2/3 sample"):
        keep.update(b)
    sample = keep.result()
    t = time.perf_counter()
    probing, probes = sparse_probing(sample, sums, cand, attrs, k_values, probe_c, printer)
    secs["probes"] = time.perf_counter() - t
    t = time.perf_counter()
    absorb_sums = AbsorptionSums(sae, attrs, probes)        # pass 3: absorption on held-out users
    for b in positions("sae-eval 3/3 absorption"):
        absorb_sums.update(b)
    absorb = absorb_sums.table()
    secs["absorption"] = time.perf_counter() - t
    return sums, sample, probing, probes, absorb, secs


def sae_eval_stage(run: RunDir, cfg: RunConfig, printer=None) -> dict:
    ec = cfg.sae_eval
    if not run.has(A.SAE_WEIGHTS):
        raise RunError(f"{run.path(A.SAE)}: no SAE; run `saerec sae --run {run.root}` first")
    folder = run.path(A.ACT_TEST)
    if not any(folder.glob("*.parquet")):
        raise RunError(f"{folder}: no test activations; run `saerec extract --run {run.root}` first")
    t0 = time.perf_counter()
    sae, meta = load_sae(run.path(A.SAE))
    items = run.read_parquet(A.CATALOGUE)
    attrs, genres = attribute_columns(items), genre_columns(items)
    m = sae.cfg.n_latents
    k_values = [k for k in sorted(set(ec.k_values)) if k <= m]

    sums, sample, probing, probes, absorb, secs = run_passes(folder, sae, items, attrs, k_values, ec.sample_rows,
                                                             ec.batch_rows, ec.probe_c, cfg.split.seed, printer)
    feats = label_confidence(sums, attrs)
    feats["labelled"] = feats["label_confidence"] >= ec.min_label_confidence

    out = run.stage(A.SAEEVAL)
    write_parquet(probing, run.path(A.EVAL_PROBING))
    write_parquet(absorb, run.path(A.EVAL_ATTRIBUTES))
    write_parquet(feats, run.path(A.EVAL_FEATURES))
    summary = summarise(probing, absorb, feats, genres, k_values, ec.min_label_confidence)
    if cfg.data.dataset == "synthetic" and genres:
        summary["planted"] = planted_recovery(sums, sae.W_dec.detach().numpy(), attrs, genres)
    summary.update({"positions": int(sums.n.sum()), "sample_rows": int(len(sample.fold)),
                    "layer": meta.get("layer"), "sae": {"kind": sae.cfg.kind, "n_latents": m},
                    "seconds": time.perf_counter() - t0, "phase_seconds": secs})
    run.write_json(A.EVAL_SUMMARY, summary)
    from .report import write_report
    write_report(out, summary, probing, absorb, feats)
    return summary


STAGE = Stage("saeeval", ("sae_eval",), (A.SAE_WEIGHTS, A.ACT_TEST, A.CATALOGUE), (A.EVAL_FEATURES, A.EVAL_SUMMARY),
              sae_eval_stage)
