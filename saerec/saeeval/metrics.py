"""The suite's metrics as plain functions of arrays, each with its formula (SAEBench's, adapted to
item attributes: no LLM, the first-letter task replaced by attribute probes).

- ``top_by_mean_difference``: the k columns whose class means differ most, |E[x | y] - E[x | not y]|
  (SAEBench's k-sparse probing picks latents this way).
- ``feature_splits``: the "main latents" of an attribute: the first latent, then the next ones while
  each raises the k-sparse probe's F1 by more than ``tau`` (SAEBench's feature-splitting rule).
- ``absorption``: per positive row, the absorption fraction and whether absorption is full.
- ``rule_scores``: precision / recall / F1 of a rule "the feature fires on items with attribute A";
  ``chance_corrected``: that F1 above what a feature firing at random would get.
- ``mcc`` and ``direction_recovery``: agreement with planted ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def class_mean_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column, E[x | y] - E[x | not y] (0 where a class is empty).

    >>> class_mean_difference(np.array([[1., 0.], [3., 1.], [0., 5.]]), np.array([True, True, False]))
    array([ 2. , -4.5])
    """
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return np.zeros(x.shape[1])
    return x[y].mean(0) - x[~y].mean(0)


def top_by_mean_difference(diff: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest |differences|, largest first (ties: lower index first).

    >>> top_by_mean_difference(np.array([0.1, -0.9, 0.5, 0.9]), 3)
    array([1, 3, 2])
    """
    order = np.argsort(-np.abs(diff), kind="stable")
    return order[:k]


def feature_splits(f1_by_k: list[float], tau: float = 0.03) -> int:
    """How many of the top latents are "main": 1, plus one more each time adding the next latent
    raises F1 by more than ``tau`` (``f1_by_k[i]`` = F1 with the top i + 1 latents).

    >>> feature_splits([0.40, 0.60, 0.61, 0.70])
    2
    >>> feature_splits([0.9, 0.91])
    1
    """
    n = 1
    while n < len(f1_by_k) and f1_by_k[n] - f1_by_k[n - 1] > tau:
        n += 1
    return n


@dataclass
class AbsorptionRows:
    fraction: np.ndarray      # (N,) absorption fraction per row, in [0, 1]
    full: np.ndarray          # (N,) bool: full absorption by one latent


def absorption(codes: np.ndarray, cos: np.ndarray, probe_proj: np.ndarray, main: np.ndarray,
               fraction_cos: float = 0.1, full_cos: float = 0.025, share: float = 0.4,
               max_absorbers: int = 3) -> AbsorptionRows:
    """SAEBench's two absorption scores for rows where the attribute is present and the probe says so.

    ``codes`` (N, m) SAE codes, ``cos`` (m,) cosine of each decoder row with the probe direction,
    ``probe_proj`` (N,) the input's projection on the probe direction, ``main`` the main latents.
    Each latent's projection is ``codes[:, j] * cos[j]`` (unit decoder rows).

    - fraction: with M = the main latents' projection and T = the summed projection of the top
      ``max_absorbers`` other latents with cos >= ``fraction_cos`` and a positive projection:
      0 if M >= probe_proj or T < share * probe_proj; 1 if M <= 0; else A / (A + M) with
      A = min(T, probe_proj - M).
    - full: every main latent is silent, probe_proj > 0, and the latent with the largest projection
      has cos >= ``full_cos`` and carries >= ``share`` of probe_proj.

    One row, main latent 0 silent, latent 1 (cos 0.5, code 2) carries the whole projection 1:

    >>> r = absorption(np.array([[0., 2., 0.]]), np.array([0.9, 0.5, 0.0]), np.array([1.0]), np.array([0]))
    >>> float(r.fraction[0]), bool(r.full[0])
    (1.0, True)

    The main latent carries 0.9 of 1.0 and latent 1 only 0.1 (< 0.4): no absorption.

    >>> r = absorption(np.array([[1., 0.2, 0.]]), np.array([0.9, 0.5, 0.0]), np.array([1.0]), np.array([0]))
    >>> float(r.fraction[0]), bool(r.full[0])
    (0.0, False)
    """
    codes = np.asarray(codes, dtype=np.float64)
    proj = codes * np.asarray(cos, dtype=np.float64)[None, :]
    is_main = np.zeros(codes.shape[1], dtype=bool)
    is_main[np.asarray(main, dtype=np.int64)] = True
    m_proj = proj[:, is_main].sum(1)
    cand = np.where((~is_main & (cos >= fraction_cos))[None, :] & (proj > 0), proj, 0.0)
    kk = min(max_absorbers, cand.shape[1])
    top = -np.sort(-cand, axis=1)[:, :kk].sum(1)
    p = np.asarray(probe_proj, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.minimum(top, p - m_proj)
        frac = np.where(m_proj <= 0, 1.0, a / (a + m_proj))
        frac = np.where((m_proj >= p) | (top < share * p), 0.0, np.clip(frac, 0.0, 1.0))
        best = proj.argmax(1)
        best_proj = proj[np.arange(len(p)), best]
        full = ((codes[:, is_main] <= 1e-8).all(1) & (p > 0) & (np.asarray(cos)[best] >= full_cos)
                & (best_proj >= share * p))
    return AbsorptionRows(np.nan_to_num(frac), full)


def rule_scores(fires_with: np.ndarray, fires: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall and F1 of "fires on items with the attribute" from counts: positions where
    the feature fires and the attribute is present, where it fires, where the attribute is present.

    >>> p, r, f = rule_scores(np.array([30., 0.]), np.array([40., 0.]), np.array([60., 10.]))
    >>> p.round(3).tolist(), r.round(3).tolist(), f.round(3).tolist()
    ([0.75, 0.0], [0.5, 0.0], [0.6, 0.0])
    """
    fires_with, fires, has = (np.asarray(a, dtype=np.float64) for a in (fires_with, fires, has))
    prec = np.divide(fires_with, fires, out=np.zeros_like(fires_with), where=fires > 0)
    rec = np.divide(fires_with, has, out=np.zeros_like(fires_with), where=has > 0)
    s = prec + rec
    f1 = np.divide(2 * prec * rec, s, out=np.zeros_like(s), where=s > 0)
    return prec, rec, f1


def chance_corrected(f1: np.ndarray, share: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """F1 above chance, as a fraction of the room above it: (F1 - F1_0) / (1 - F1_0), floored at 0,
    where F1_0 = 2 s q / (s + q) is the F1 of a feature firing at rate q independently of an
    attribute with share s (precision s, recall q). Without it a feature firing at random on a
    third of the positions scores F1 ~ 0.34 against Drama (share 0.35) and would keep that label.

    >>> chance_corrected(np.array([0.34, 1.0, 0.6]), np.array([0.35, 0.1, 0.1]), np.array([0.33, 0.1, 0.1])).round(3).tolist()
    [0.0, 1.0, 0.556]
    """
    share, rate = np.asarray(share, dtype=np.float64), np.asarray(rate, dtype=np.float64)
    s = share + rate
    f0 = np.divide(2 * share * rate, s, out=np.zeros_like(s), where=s > 0)
    return np.clip(np.divide(np.asarray(f1) - f0, 1 - f0, out=np.zeros_like(s), where=f0 < 1), 0.0, 1.0)


def mcc(corr: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean correlation coefficient: the one-to-one matching of learned units (rows) to planted
    variables (columns) maximising summed |correlation| (Hungarian), and its mean. Returns (MCC,
    the matched row of each column).

    >>> c = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.3]])
    >>> value, rows = mcc(c)
    >>> round(value, 3), rows.tolist()
    (0.85, [1, 0])
    """
    from scipy.optimize import linear_sum_assignment     # scipy: a dependency of scikit-learn

    a = np.abs(np.nan_to_num(np.asarray(corr, dtype=np.float64)))
    rows, cols = linear_sum_assignment(-a)
    matched = np.full(a.shape[1], -1, dtype=np.int64)
    matched[cols] = rows
    return float(a[rows, cols].sum() / a.shape[1]), matched


def direction_recovery(W_dec: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """For each planted direction (rows of ``planted``), the largest cosine with any decoder row.

    >>> W = np.array([[1., 0.], [0.6, 0.8]])
    >>> direction_recovery(W, np.array([[0., 2.], [-1., 0.]])).round(3).tolist()
    [0.8, 0.0]
    """
    W = np.asarray(W_dec, dtype=np.float64)
    P = np.asarray(planted, dtype=np.float64)
    W = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
    P = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
    return np.clip((P @ W.T).max(1), 0.0, None) if len(W) else np.zeros(len(P))
