"""Streaming the test activations for the suite: fold sums (pass 1) and a bounded row sample (pass 2).

Test users are split into two folds by user id (``fold = user_id % 2``), so every score can be
fitted on one set of users and measured on the other. Pass 1 keeps, per fold, the sums that give
exact class means, correlations and firing counts over *all* positions; pass 2 keeps at most
``sample_rows`` positions (a uniform sample by random keys) with the raw neurons and only the SAE
latents the probes can use, so memory is bounded whatever the number of positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from ..activations.store import count_rows, iter_batches, to_tensor
from ..progress import Progress
from ..reservoir import Reservoir as KeyReservoir

COLUMNS = ("user_id", "item_id", "activation")


@dataclass
class Batch:
    fold: np.ndarray          # (B,) 0 or 1
    x: torch.Tensor           # (B, d) normalised activations (the SAE's input; "neurons")
    codes: torch.Tensor       # (B, m) SAE codes
    y: torch.Tensor           # (B, A) bool attributes of the item at each position


def stream(folder: Path, sae, items: pd.DataFrame, attrs: list[str], batch_rows: int = 8192,
           what: str = "sae-eval", printer: Callable[[str], None] | None = None,
           max_rows: int | None = None) -> Iterator[Batch]:
    """Every test position as (fold, normalised x, codes, attributes), ``batch_rows`` at a time, with
    a progress line (rate, ETA) every few seconds; only the first ``max_rows`` positions if given."""
    lookup = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    Y_all = torch.from_numpy(items[attrs].to_numpy(dtype=bool).copy())
    total = count_rows(folder) if max_rows is None else min(max_rows, count_rows(folder))
    prog = Progress(what, total, "positions", every_s=5.0, printer=printer)
    seen = 0
    with torch.no_grad():
        for rb in iter_batches(folder, COLUMNS, batch_rows):
            if seen >= total:
                break
            rb = rb.slice(0, total - seen)
            seen += rb.num_rows
            x = sae.normalizer(to_tensor(rb.column("activation")))
            rows = torch.from_numpy(lookup[rb.column("item_id").to_numpy()].to_numpy().copy())
            fold = (rb.column("user_id").to_numpy() % 2).astype(np.int64)
            yield Batch(fold, x, sae.encode(x), Y_all[rows])
            prog.update(rb.num_rows)
    prog.printer(prog.line("done"))


@dataclass
class FoldSums:
    """Per fold: n, sum y, and for the codes and the neurons sum x, sum x^2, x^T y; for the codes
    also how often each fires and fires together with each attribute."""

    m: int
    d: int
    A: int
    n: torch.Tensor = field(init=False)

    def __post_init__(self):
        z = lambda *s: torch.zeros(2, *s, dtype=torch.float64)   # noqa: E731
        self.n, self.sy = z(), z(self.A)
        self.sf, self.sff, self.sfy = z(self.m), z(self.m), z(self.m, self.A)
        self.sx, self.sxx, self.sxy = z(self.d), z(self.d), z(self.d, self.A)
        self.fire, self.fire_y = z(self.m), z(self.m, self.A)

    def update(self, b: Batch) -> None:
        # per-batch products in float32 (8k rows: exact enough, and ~8x faster than float64 GEMMs
        # on this CPU), accumulated in float64 across batches
        onehot = torch.nn.functional.one_hot(torch.from_numpy(b.fold), 2).float()     # (B, 2)
        f, x, y = b.codes.float(), b.x.float(), b.y.float()
        act = (f > 0).float()
        self.n += onehot.sum(0).double()
        self.sy += (onehot.T @ y).double()
        self.sf += (onehot.T @ f).double()
        self.sff += (onehot.T @ (f * f)).double()
        self.sx += (onehot.T @ x).double()
        self.sxx += (onehot.T @ (x * x)).double()
        self.fire += (onehot.T @ act).double()
        for k in (0, 1):
            yk = y * onehot[:, k:k + 1]
            self.sfy[k] += (f.T @ yk).double()
            self.sxy[k] += (x.T @ yk).double()
            self.fire_y[k] += (act.T @ yk).double()

    def _pick(self, folds) -> tuple:
        idx = list(folds)
        return tuple(t[idx].sum(0) for t in (self.n, self.sy, self.sf, self.sff, self.sfy,
                                              self.sx, self.sxx, self.sxy, self.fire, self.fire_y))

    def correlation(self, folds=(0, 1), neurons: bool = False) -> np.ndarray:
        """Pearson correlation of every code (or neuron) with every attribute over ``folds``."""
        n, sy, sf, sff, sfy, sx, sxx, sxy, _, _ = self._pick(folds)
        s, ss, sxa = (sx, sxx, sxy) if neurons else (sf, sff, sfy)
        cov = n * sxa - s[:, None] * sy[None, :]
        var = ((n * ss - s ** 2).clamp_min(0)[:, None] * (n * sy - sy ** 2).clamp_min(0)[None, :]).sqrt()
        return torch.where(var > 0, cov / var.clamp_min(1e-300), torch.zeros_like(cov)).numpy()

    def mean_difference(self, folds=(0,), neurons: bool = False) -> np.ndarray:
        """(m or d, A): E[x | attribute] - E[x | not attribute] over ``folds``."""
        n, sy, sf, _, sfy, sx, _, sxy, _, _ = self._pick(folds)
        s, sa = (sx, sxy) if neurons else (sf, sfy)
        pos = sa / sy.clamp_min(1)[None, :]
        neg = (s[:, None] - sa) / (n - sy).clamp_min(1)[None, :]
        return (pos - neg).numpy()

    def class_mean_direction(self, folds=(0, 1)) -> np.ndarray:
        """(A, d): each attribute's class-mean difference of the normalised input."""
        return self.mean_difference(folds, neurons=True).T

    def firing(self, folds) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(fires with attribute (m, A), fires (m,), attribute count (A,), positions) over ``folds``."""
        n, sy, _, _, _, _, _, _, fire, fire_y = self._pick(folds)
        return fire_y.numpy(), fire.numpy(), sy.numpy(), float(n)


@dataclass
class Sample:
    fold: np.ndarray          # (N,)
    x: np.ndarray             # (N, d) float32 normalised input
    codes: np.ndarray         # (N, len(latents)) float32 codes of the kept latents
    y: np.ndarray             # (N, A) bool
    latents: np.ndarray       # the SAE latents kept, in column order


class Reservoir:
    """A uniform sample of at most ``cap`` rows (saerec.reservoir) with only the ``latents`` kept."""

    def __init__(self, cap: int, latents: np.ndarray, seed: int = 0):
        self.latents = torch.as_tensor(np.asarray(latents, dtype=np.int64))
        self.sample = KeyReservoir(cap, seed)

    def update(self, b: Batch) -> None:
        self.sample.add(b.fold, b.x.numpy().astype(np.float32), b.codes[:, self.latents].numpy(), b.y.numpy())

    def result(self) -> Sample:
        fold, x, codes, y = self.sample.result()
        return Sample(fold, x, codes, y, self.latents.numpy())
