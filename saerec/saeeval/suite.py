"""The suite's computations over the fold sums and the row sample (no I/O).

Fold 0 users fit (latent choice, probes, labels), fold 1 users score; label confidence is
cross-fitted both ways and averaged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..progress import Progress
from .collect import Batch, FoldSums, Sample
from .logreg import held_out_scores
from .metrics import (absorption, chance_corrected, direction_recovery, feature_splits, mcc, rule_scores,
                      top_by_mean_difference)

SPLIT_K = 5            # latents tried one by one for the feature-splitting rule


def candidate_latents(sums: FoldSums, k_max: int) -> np.ndarray:
    """(A, k_max) each attribute's top latents by |class-mean difference| on fold 0, best first."""
    diff = sums.mean_difference((0,))
    return np.stack([top_by_mean_difference(diff[:, a], k_max) for a in range(diff.shape[1])])


def sparse_probing(sample: Sample, sums: FoldSums, cand: np.ndarray, attrs: list[str], k_values: list[int],
                   C: float = 1.0, printer=None) -> tuple[pd.DataFrame, dict[str, dict]]:
    """k-sparse probes on SAE latents and on raw neurons (both chosen by class-mean difference on
    fold 0), and the full linear probe on all neurons; fitted on fold 0 rows, scored on fold 1 rows.

    Returns the long table (attribute, source, k, auc, f1, units) and per attribute its main
    latents and the full probe (weights, intercept) that absorption needs."""
    tr, te = torch.from_numpy(sample.fold == 0), torch.from_numpy(sample.fold == 1)
    col = {int(j): i for i, j in enumerate(sample.latents)}
    codes, x, Y = torch.from_numpy(sample.codes), torch.from_numpy(sample.x), torch.from_numpy(sample.y).T   # Y (A, N)
    ndiff = sums.mean_difference((0,), neurons=True)
    d, A = x.shape[1], len(attrs)

    def fit(units: np.ndarray, source: torch.Tensor):
        """units (A, k): column indices of ``source`` for each attribute; attributes in chunks so the
        stacked (chunk, N, k) float64 design stays under ~64 MB whatever N."""
        step = max(1, (64 << 20) // (8 * len(source) * (units.shape[1] + 1)))
        parts = []
        for lo in range(0, A, step):
            X = source[:, torch.from_numpy(units[lo: lo + step])].permute(1, 0, 2)    # (chunk, N, k)
            y = Y[lo: lo + step]
            parts.append(held_out_scores(X[:, tr], y[:, tr], X[:, te], y[:, te], C))
        return [torch.cat(t) for t in zip(*parts)]

    rows, f1_split = [], []
    ks = sorted(set(k_values) | set(range(1, SPLIT_K + 1)))
    prog = Progress("sae-eval probes", len(ks) + len([k for k in k_values if k <= d]) + 1, "fits", every_s=5.0,
                    printer=printer)
    for k in ks:
        units = cand[:, :k]
        auc, f1, _, _ = fit(np.vectorize(col.get)(units), codes)
        prog.update(1, extra=f"SAE k={k}")
        if k <= SPLIT_K:
            f1_split.append(f1.numpy())
        if k in k_values:
            rows += [(a, "sae", k, float(auc[i]), float(f1[i]), units[i].tolist()) for i, a in enumerate(attrs)]
            if k <= d:
                nu = np.stack([top_by_mean_difference(ndiff[:, i], k) for i in range(A)])
                auc, f1, _, _ = fit(nu, x)
                prog.update(1, extra=f"neurons k={k}")
                rows += [(a, "neurons", k, float(auc[i]), float(f1[i]), nu[i].tolist()) for i, a in enumerate(attrs)]
    auc, f1, w, b = fit(np.tile(np.arange(d), (A, 1)), x)
    prog.update(1, extra="full probe")
    rows += [(a, "full_probe", d, float(auc[i]), float(f1[i]), list(range(d))) for i, a in enumerate(attrs)]
    splits = np.nan_to_num(np.stack(f1_split, 1))                                  # (A, SPLIT_K)
    probes = {a: {"main": cand[i, :feature_splits(splits[i].tolist())].tolist(), "coef": w[i].numpy(),
                  "intercept": float(b[i]), "auc": float(auc[i])} for i, a in enumerate(attrs)}
    table = pd.DataFrame(rows, columns=["attribute", "source", "k", "auc", "f1", "units"])
    return table, probes


class AbsorptionSums:
    """Streams fold-1 positions: per attribute, over positives the full probe gets right, the summed
    absorption fraction and the count of full absorptions (pass 3)."""

    def __init__(self, sae, attrs: list[str], probes: dict[str, dict]):
        self.attrs = attrs
        W = sae.W_dec.detach().double()
        W = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.b_dec = sae.b_dec.detach().double().numpy()
        self.dirs, self.cos = {}, {}
        for a in attrs:
            c = np.asarray(probes[a]["coef"], dtype=np.float64)
            norm = np.linalg.norm(c)
            if norm > 0:
                self.dirs[a] = c / norm
                self.cos[a] = (W @ torch.from_numpy(self.dirs[a])).numpy()
        self.probes = probes
        self.tp = {a: 0 for a in attrs}
        self.frac = {a: 0.0 for a in attrs}
        self.full = {a: 0 for a in attrs}

    def update(self, b: Batch) -> None:
        held = b.fold == 1
        if not held.any():
            return
        x = b.x.numpy()[held].astype(np.float64)
        y = b.y.numpy()[held]
        codes = b.codes.numpy()[held]
        for i, a in enumerate(self.attrs):
            if a not in self.dirs:
                continue
            p = self.probes[a]
            right = y[:, i] & (x @ p["coef"] + p["intercept"] > 0)
            if not right.any():
                continue
            r = absorption(codes[right], self.cos[a], (x[right] - self.b_dec) @ self.dirs[a], np.asarray(p["main"]))
            self.tp[a] += int(right.sum())
            self.frac[a] += float(r.fraction.sum())
            self.full[a] += int(r.full.sum())

    def table(self) -> pd.DataFrame:
        rows = []
        for a in self.attrs:
            n = self.tp[a]
            rows.append({"attribute": a, "main_latents": list(map(int, self.probes[a]["main"])),
                         "probe_auc": self.probes[a]["auc"], "probe_true_positives": n,
                         "absorption_fraction": self.frac[a] / n if n else float("nan"),
                         "full_absorption_rate": self.full[a] / n if n else float("nan")})
        return pd.DataFrame(rows)


def label_confidence(sums: FoldSums, attrs: list[str]) -> pd.DataFrame:
    """Per feature: its label (the attribute it correlates with most over all test positions, as the
    catalog) and how well "fires on items with the label" predicts its firing on users it was not
    labelled on: the label is chosen on one fold and the rule's precision / recall / F1 measured on
    the other, both ways, averaged. ``label_confidence`` is that held-out F1 corrected for chance
    (``chance_corrected``: 0 for a feature firing independently of its label, 1 for a perfect rule)."""
    corr = sums.correlation((0, 1))
    label = corr.argmax(1)
    m = corr.shape[0]
    P, R, F, F1 = np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m)
    picks = []
    for fit, score in ((0, 1), (1, 0)):
        lab = sums.correlation((fit,)).argmax(1)
        picks.append(lab)
        fy, fire, has, n = sums.firing((score,))
        p, r, f = rule_scores(fy[np.arange(m), lab], fire, has[lab])
        F1 = F1 + f / 2
        P, R, F = P + p / 2, R + r / 2, F + chance_corrected(f, has[lab] / max(n, 1.0), fire / max(n, 1.0)) / 2
    stable = picks[0] == picks[1]
    _, fire, _, n = sums.firing((0, 1))
    return pd.DataFrame({"feature": np.arange(m), "label": [attrs[a] for a in label],
                         "label_correlation": corr[np.arange(m), label], "label_confidence": F,
                         "rule_f1": F1, "rule_precision": P, "rule_recall": R, "label_stable": stable,
                         "firing_frequency": fire / max(n, 1.0)})


def planted_recovery(sums: FoldSums, W_dec: np.ndarray, attrs: list[str], planted: list[str],
                     threshold: float = 0.9) -> dict:
    """Agreement with the planted genres of the synthetic data: MCC (Hungarian-matched mean |corr|)
    of SAE latents and of raw neurons with the planted genre indicators, and the recovery of each
    genre's direction (its class-mean difference of the input) by the best decoder row, next to the
    best single neuron axis."""
    idx = [attrs.index(g) for g in planted]
    mcc_sae, match = mcc(sums.correlation((0, 1))[:, idx])
    mcc_neurons, _ = mcc(sums.correlation((0, 1), neurons=True)[:, idx])
    dirs = sums.class_mean_direction((0, 1))[idx]
    cos_sae = direction_recovery(W_dec, dirs)
    cos_axes = direction_recovery(np.eye(dirs.shape[1]), np.abs(dirs))
    return {"planted": planted, "mcc_sae": mcc_sae, "mcc_neurons": mcc_neurons,
            "matched_latent": dict(zip(planted, match.tolist())),
            "max_cosine_sae": dict(zip(planted, cos_sae.tolist())),
            "max_cosine_neuron_axis": dict(zip(planted, cos_axes.tolist())),
            "recovered_fraction_sae": float((cos_sae >= threshold).mean()),
            "recovered_fraction_neuron_axes": float((cos_axes >= threshold).mean()), "threshold": threshold}
