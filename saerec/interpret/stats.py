"""Feature x attribute statistics over a stream of positions (paper section 4.2).

For codes F (N x m, one row per position) and binary attributes Y (N x A) of the item at each
position, the sufficient statistics are sums: sum F, sum F^2, sum Y, F^T Y, 1[F>0]^T Y and counts of
1[F>0]. From them, exactly over *all* positions:

- Pearson correlation (= point-biserial for binary Y)
- sensitivity P(active | attribute) and precision P(attribute | active)

ROC AUC needs ranks, so it is computed on a uniform reservoir sample of positions (``auc_sample``
rows, default 200,000 as in the authors' code; exact when the data is smaller), with average
ranks for ties (the Mann-Whitney form, equal to ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..reservoir import Reservoir


@dataclass
class AttributeStats:
    correlation: np.ndarray      # (m, A)
    auc: np.ndarray              # (m, A)
    sensitivity: np.ndarray      # (m, A)
    precision: np.ndarray        # (m, A)
    attribute_share: np.ndarray  # (A,)  fraction of positions with the attribute
    firing: np.ndarray           # (m,)  fraction of positions where the feature is active
    n: int
    auc_rows: int


class StreamedAttributeStats:
    def __init__(self, n_features: int, n_attributes: int, auc_sample: int = 200_000, seed: int = 0):
        m, A = n_features, n_attributes
        self.n = 0
        self.sf = torch.zeros(m, dtype=torch.float64)
        self.sff = torch.zeros(m, dtype=torch.float64)
        self.sy = torch.zeros(A, dtype=torch.float64)
        self.sfy = torch.zeros(m, A, dtype=torch.float64)
        self.active = torch.zeros(m, dtype=torch.float64)
        self.active_y = torch.zeros(m, A, dtype=torch.float64)
        self.sample = Reservoir(auc_sample, seed)

    @torch.no_grad()
    def update(self, f: torch.Tensor, y: torch.Tensor) -> None:
        f64, y64 = f.double(), y.double()
        act = (f > 0).double()
        self.n += f.shape[0]
        self.sf += f64.sum(0)
        self.sff += (f64 * f64).sum(0)
        self.sy += y64.sum(0)
        self.sfy += f64.T @ y64
        self.active += act.sum(0)
        self.active_y += act.T @ y64
        self.sample.add(f.float(), y.bool())

    def sample_rows(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The AUC sample: codes (float32) and attributes (bool) of at most ``auc_sample`` positions."""
        return self.sample.result() or (None, None)

    def result(self) -> AttributeStats:
        n = float(self.n)
        cov = n * self.sfy - self.sf[:, None] * self.sy[None, :]
        var_f = (n * self.sff - self.sf ** 2).clamp_min(0)
        var_y = (n * self.sy - self.sy ** 2).clamp_min(0)
        denom = (var_f[:, None] * var_y[None, :]).sqrt()
        corr = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
        sens = self.active_y / self.sy.clamp_min(1)[None, :]
        prec = self.active_y / self.active.clamp_min(1)[:, None]
        res_f, res_y = self.sample_rows()
        return AttributeStats(corr.numpy(), auc_matrix(res_f, res_y), sens.numpy(), prec.numpy(),
                              (self.sy / max(n, 1)).numpy(), (self.active / max(n, 1)).numpy(), self.n,
                              0 if res_f is None else len(res_f))


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Column-wise ranks 1..N with ties averaged (as scipy.stats.rankdata)."""
    N, m = x.shape
    order = torch.sort(x, dim=0, stable=True).indices
    sx = x.gather(0, order)
    pos = torch.arange(1, N + 1, dtype=torch.float64)[:, None].expand(N, m)
    # tie groups: a new group starts where the sorted value changes
    new = torch.ones(N, m, dtype=torch.bool)
    new[1:] = sx[1:] != sx[:-1]
    gid = new.long().cumsum(0) - 1                           # group index per sorted row
    sums = torch.zeros(N, m, dtype=torch.float64).scatter_add_(0, gid, pos)
    counts = torch.zeros(N, m, dtype=torch.float64).scatter_add_(0, gid, torch.ones(N, m, dtype=torch.float64))
    avg = sums.gather(0, gid) / counts.gather(0, gid)
    ranks = torch.empty(N, m, dtype=torch.float64)
    ranks.scatter_(0, order, avg)
    return ranks


def auc_matrix(f: torch.Tensor | None, y: torch.Tensor | None, chunk_bytes: int = 64 << 20) -> np.ndarray:
    """ROC AUC of each feature column against each binary attribute column (NaN if one class is absent).

    Columns are ranked a chunk at a time, the chunk sized so that one (rows x chunk) float64 array
    takes at most ``chunk_bytes``: ranking keeps about seven such arrays at once, and a fixed 256
    columns of the 200,000-row sample made those 2.9 GB, the largest part of interpret's peak.
    """
    if f is None:
        return np.zeros((0, 0))
    y64 = y.double()
    n_pos = y64.sum(0)
    n_neg = y64.shape[0] - n_pos
    chunk = max(1, min(256, chunk_bytes // (8 * max(f.shape[0], 1))))
    out = []
    for lo in range(0, f.shape[1], chunk):
        R = average_ranks(f[:, lo: lo + chunk])
        U = R.T @ y64 - (n_pos * (n_pos + 1) / 2)[None, :]
        out.append(U / (n_pos * n_neg)[None, :])
    auc = torch.cat(out).numpy()
    auc[:, (n_pos.numpy() == 0) | (n_neg.numpy() == 0)] = np.nan
    return auc
