"""SAE optimisation over any stream of normalised activation batches (plain torch).

Ray Train calls :func:`train_steps` on each worker with batches from its Ray Data shard; tests
and benchmarks call it with in-memory tensors. Adam at the paper's lr 1e-3; after every step the
decoder rows are re-projected to unit norm (their parallel gradient removed before the step).
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..precision import autocast, to_device
from .base import SparseAutoencoder


def make_optimizer(sae: SparseAutoencoder) -> torch.optim.Optimizer:
    return torch.optim.Adam(sae.parameters(), lr=sae.cfg.lr, fused=True)


def train_steps(sae: SparseAutoencoder, opt: torch.optim.Optimizer, batches: Iterable[torch.Tensor],
                progress=None, forward: torch.nn.Module | None = None, manual_grads: bool = True,
                dtype: torch.dtype | None = None) -> dict[str, float]:
    """One pass over ``batches``; returns mean loss parts weighted by rows.

    ``forward``: the module to call instead of ``sae`` (its DDP wrapper on Ray Train workers, so
    gradients are averaged before the decoder projection runs on every rank).
    ``manual_grads``: use the kind's hand-written gradients when it has them (same values, faster);
    never through a DDP wrapper, whose gradient averaging hooks into autograd.
    ``dtype``: autocast dtype of the step's matrix products (None: fp32); weights, gradients and
    Adam's state stay fp32. The loss parts are summed on the device and read once, at the end.
    """
    forward = forward or sae
    forward.train()
    manual = manual_grads and forward is sae and sae.has_manual_grads()
    device = sae.W_dec.device
    sums: dict[str, torch.Tensor] = {}
    rows = 0
    for x in batches:
        x = to_device(x, device)
        with autocast(dtype, device):
            if manual:
                parts = sae.loss_and_grads(x)
                loss = sum(parts.values())
            else:
                out = forward(x)
                parts, loss = out.parts, out.loss
        if not manual:
            opt.zero_grad(set_to_none=True)
            loss.backward()
        sae.remove_parallel_grads()
        opt.step()
        sae.normalize_decoder()
        n = x.shape[0]
        rows += n
        for k, v in (*parts.items(), ("loss", loss)):
            add = v.detach().double() * n
            sums[k] = sums[k] + add if k in sums else add
        if progress is not None:
            progress.update(n)
    return {k: float(v) / max(rows, 1) for k, v in sums.items()} | {"rows": rows}


def shuffled_batches(blocks: Iterable[torch.Tensor], batch_size: int, buffer_rows: int,
                     generator: torch.Generator | None = None) -> Iterable[torch.Tensor]:
    """Minibatches from a stream of row blocks through a shuffle buffer of about ``buffer_rows`` rows.

    Each incoming block joins the buffer, the buffer is permuted, and as many whole batches as
    came in leave it; at the end the rest is permuted and cut (a ragged tail under ``batch_size``
    is dropped). Every row is used once. Rows from different blocks (files, users) mix, as with
    Ray Data's local shuffle buffer, but with one tensor gather per block instead of per-batch
    sampling over Arrow tables (which halved the Ray-fed SAE's throughput, measured).
    """
    buf = None
    for b in blocks:
        buf = b if buf is None else torch.cat([buf, b])
        if len(buf) <= buffer_rows:
            continue
        buf = buf[torch.randperm(len(buf), generator=generator)]
        n_out = (len(buf) - buffer_rows) // batch_size * batch_size
        out, buf = buf[:n_out], buf[n_out:]
        for lo in range(0, n_out, batch_size):
            yield out[lo: lo + batch_size]
    if buf is not None and len(buf) >= batch_size:
        buf = buf[torch.randperm(len(buf), generator=generator)]
        for lo in range(0, len(buf) - batch_size + 1, batch_size):
            yield buf[lo: lo + batch_size]


class ReconStats:
    """Streamed reconstruction metrics (normalised space): RMSE, explained variance, L0, firing counts.

    explained variance = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over all rows (the global
    form, not a mean of per-row ratios).
    """

    def __init__(self, n_latents: int):
        self.n = 0
        self.sq_err = 0.0
        self.s = None
        self.ss = 0.0
        self.l0 = 0.0
        self.fired = torch.zeros(n_latents, dtype=torch.long)
        self.max_act = torch.zeros(n_latents)
        self.sum_act = torch.zeros(n_latents, dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> None:
        x64 = x.double()
        self.n += x.shape[0]
        self.sq_err += float((x - x_hat).double().pow(2).sum())
        self.s = x64.sum(0) if self.s is None else self.s + x64.sum(0)
        self.ss += float(x64.pow(2).sum())
        active = f > 0
        self.l0 += float(active.sum())
        self.fired += active.sum(0)
        self.max_act = torch.maximum(self.max_act, f.max(0).values.float())
        self.sum_act += f.double().sum(0)

    def result(self) -> dict:
        d = self.s.numel()
        total_var = self.ss - float((self.s * self.s).sum()) / self.n
        return {
            "rmse": (self.sq_err / (self.n * d)) ** 0.5,
            "explained_variance": 1.0 - self.sq_err / max(total_var, 1e-12),
            "l0": self.l0 / self.n,
            "dead_fraction": float((self.fired == 0).float().mean()),
            "activations": self.n,
        }

    def feature_stats(self) -> dict[str, list[float]]:
        freq = (self.fired.double() / max(self.n, 1))
        mean_when_active = self.sum_act / self.fired.clamp_min(1).double()
        return {"firing_frequency": freq.tolist(), "max_activation": self.max_act.tolist(),
                "mean_activation": mean_when_active.tolist()}
