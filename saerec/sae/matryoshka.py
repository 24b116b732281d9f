"""Matryoshka BatchTopK SAE (Bussmann et al. 2025; Nabeshima 2024): nested dictionary prefixes.

The dictionary is cut into nested prefixes (``matryoshka_prefixes``, fractions of ``n_latents``:
by default the first 1/64, 1/16 and 1/4, then all of it). Training selects codes with BatchTopK over
the whole dictionary, then sums the reconstruction loss of every prefix: the first latents must
reconstruct on their own, so they learn general directions, and later latents add detail instead
of absorbing a general feature into a specific one (feature absorption, which this kind lowers).

Inference is BatchTopK's: a global threshold (EMA of the smallest kept training activation),
so a row's code never depends on its batch and the checkpoint is a JumpReLU for SAELens.
"""

from __future__ import annotations

import torch

from .topk import BatchTopKSAE


class MatryoshkaSAE(BatchTopKSAE):
    def __init__(self, d_in, cfg):
        super().__init__(d_in, cfg)
        self.prefixes = prefix_sizes(cfg.n_latents, cfg.matryoshka_prefixes)

    def forward(self, x: torch.Tensor):
        out = super().forward(x)
        if self.training and len(self.prefixes) > 1:
            inner = self.prefix_losses(x, out.f)
            out.parts["recon_prefixes"] = inner
            out.loss = out.loss + inner
        return out

    def prefix_losses(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Sum of the reconstruction losses of every prefix but the full dictionary (already in
        ``recon``): x_hat_m = f[:, :m] W_dec[:m] + b_dec, built group by group."""
        total = x.new_zeros(())
        x_hat = self.b_dec.expand_as(x)
        lo = 0
        for m in self.prefixes[:-1]:
            x_hat = x_hat + f[:, lo:m] @ self.W_dec[lo:m]
            total = total + self.recon_loss(x, x_hat)
            lo = m
        return total

    def auxk_weight(self) -> float:
        """``auxk_alpha`` times the number of reconstruction losses (one per prefix): the training
        loss sums them, so an unscaled AuxK pulls dead latents back a third as hard as in BatchTopK
        against the same reconstruction gradient (ML-1M GPTRec, weight 1: 61% dead on the test
        users against BatchTopK's 4%; docs/sae-eval.md)."""
        return self.cfg.auxk_alpha * len(self.prefixes)

    def prefix_bounds(self) -> list[int] | None:
        return self.prefixes if len(self.prefixes) > 1 else None


def prefix_sizes(n_latents: int, fractions: list[float]) -> list[int]:
    """Latent counts of the nested prefixes: each fraction of ``n_latents`` rounded, at least 1,
    duplicates (tiny dictionaries) dropped; the last is always the whole dictionary."""
    sizes = sorted({max(1, min(n_latents, round(f * n_latents))) for f in fractions} | {n_latents})
    return sizes
