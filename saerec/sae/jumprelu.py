"""JumpReLU SAE (Rajamanoharan et al. 2024): f = pre * H(pre - theta), per-latent learned theta,
L0 penalty; theta gets gradients through a straight-through rectangle kernel of width ``bandwidth``."""

from __future__ import annotations

import torch
import torch.nn as nn

from .base import SparseAutoencoder


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        kernel = ((x - threshold).abs() < bw / 2).to(x.dtype) / bw
        return None, (-grad * kernel).sum(0), None


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        gate = (x > threshold).to(x.dtype)
        kernel = ((x - threshold).abs() < bw / 2).to(x.dtype) / bw
        return grad * gate, (-grad * threshold * kernel).sum(0), None


class JumpReLUSAE(SparseAutoencoder):
    def __init__(self, d_in, cfg):
        super().__init__(d_in, cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.n_latents,), float(torch.tensor(cfg.jump_init_threshold).log())))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return _JumpReLU.apply(pre, self.log_threshold.exp(), self.cfg.jump_bandwidth)

    def sparsity_loss(self, f, pre):
        l0 = _Step.apply(pre, self.log_threshold.exp(), self.cfg.jump_bandwidth).sum(-1).mean()
        return {"l0": self.cfg.l0 * l0}
