"""ReLU + L1: the paper's SAE (as in the authors' dictionary_learning ``AutoEncoder``)."""

from __future__ import annotations

import torch

from .base import SparseAutoencoder


class ReLUSAE(SparseAutoencoder):
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def sparsity_loss(self, f, pre):
        # decoder rows are unit norm, so |f| is each latent's contribution length
        return {"l1": self.cfg.l1 * f.abs().sum(-1).mean()}
