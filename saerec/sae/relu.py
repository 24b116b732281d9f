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

    def has_manual_grads(self) -> bool:
        return self.cfg.recon == "squared"

    @torch.no_grad()
    def loss_and_grads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training step's loss parts, with every parameter's gradient written to ``.grad``.

        Same loss and gradients as ``forward(x).loss.backward()`` (a test checks), computed by hand:
        the SAE is small enough (a (B, m) code matrix between two thin GEMMs) that autograd's
        elementwise passes over the codes (abs, sign, threshold backward, the L1 sum's expand, the
        firing mask) cost about as much as the GEMMs. Here the codes are touched four times: ReLU,
        their column sums (the L1 term and which latents fired), the ReLU gate on the code gradient,
        and its column sums.

            pre = (x - b_dec) W_enc + b_enc    f = relu(pre)    x_hat = f W_dec + b_dec
            loss = sum((x_hat - x)^2) / B + l1 * sum(f) / B
        """
        B = x.shape[0]
        f = self.pre_acts(x).relu_()
        col = f.sum(0)                                                # codes are >= 0: col > 0 <=> fired
        err = self.decode(f).sub_(x)                                  # (B, d)
        recon = err.pow(2).sum() / B
        l1 = self.cfg.l1 * col.sum() / B
        d_xhat = err.mul_(2.0 / B)
        g_dec = f.T @ d_xhat                                          # (m, d)
        # dL/df = d_xhat W_dec^T + l1/B, gated by ReLU (threshold_backward: one pass, as autograd's)
        g_pre = torch.addmm(torch.full((1, f.shape[1]), self.cfg.l1 / B), d_xhat, self.W_dec.T)
        g_pre = torch.ops.aten.threshold_backward(g_pre, f, 0.0)
        g_benc = g_pre.sum(0)
        # d/dW_enc of (x - b_dec) W_enc, built as its (m, d) transpose: W_enc starts as W_dec^T and
        # keeps that memory layout, and a fused optimizer needs each gradient laid out as its weight
        g_enc = (g_pre.T @ x - torch.outer(g_benc, self.b_dec)).T
        g_bdec = d_xhat.sum(0) - self.W_enc @ g_benc
        for p, g in ((self.W_enc, g_enc), (self.W_dec, g_dec), (self.b_enc, g_benc), (self.b_dec, g_bdec)):
            p.grad = g if g.stride() == p.stride() and g.dtype == p.dtype else torch.empty_like(p).copy_(g)
        self._track_dead(col > 0, B)
        return {"recon": recon, "l1": l1}
