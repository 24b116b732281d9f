"""TopK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024) SAEs, with AuxK for dead latents.

BatchTopK keeps the ``k * batch`` largest activations over the whole batch during training, so a
row's code depends on its batch. For inference it uses a global threshold (an EMA of the smallest
kept activation), stored in the checkpoint: a served result never depends on the batch.
"""

from __future__ import annotations

import torch

from .base import SparseAutoencoder


class TopKSAE(SparseAutoencoder):
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = torch.relu(pre).topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, vals)

    def aux_loss(self, x, x_hat, pre):
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0 or self.cfg.auxk_alpha <= 0:
            return None
        k_aux = min(self.cfg.k_aux or self.d_in // 2, n_dead)
        residual = (x - x_hat).detach()
        masked = torch.where(dead, torch.relu(pre), torch.zeros_like(pre))
        vals, idx = masked.topk(k_aux, dim=-1)
        aux_f = torch.zeros_like(pre).scatter(-1, idx, vals)
        recon = aux_f @ self.W_dec          # no b_dec: the target is a residual
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        return self.cfg.auxk_alpha * (residual - recon).pow(2).sum(-1).mean() / denom


class BatchTopKSAE(TopKSAE):
    def __init__(self, d_in, cfg):
        super().__init__(d_in, cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))   # < 0: not yet estimated

    def train_codes(self, pre: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(pre)
        flat = acts.flatten()
        n_keep = min(self.cfg.k * pre.shape[0], flat.numel())
        vals, idx = flat.topk(n_keep)
        f = torch.zeros_like(flat).scatter(0, idx, vals).view_as(acts)
        with torch.no_grad():
            positive = vals[vals > 0]
            if positive.numel():
                m = positive.min()
                self.threshold.copy_(m if self.threshold < 0 else 0.99 * self.threshold + 0.01 * m)
        return f

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Inference: JumpReLU at the learned global threshold (batch-independent)."""
        acts = torch.relu(pre)
        thr = self.threshold.clamp_min(0.0)
        return torch.where(acts > thr, acts, torch.zeros_like(acts))
