"""Next-item losses over the non-padding positions only.

Only real positions go through the output head: the (tokens x items) logits matrix is the
largest tensor in training, so skipping padding there matters more than anywhere else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ChunkedLinearCE(torch.autograd.Function):
    """mean_n CE(softmax(h_n W^T), y_n) computed chunk by chunk, never holding the (N, V) logits.

    On a CPU the full logits matrix (8k tokens x 3.6k items = 115 MB) makes log-softmax and its
    backward memory-bound; chunks of a few hundred rows stay in cache. Backward recomputes each
    chunk's logits (one extra GEMM) instead of storing them.
    """

    @staticmethod
    def forward(ctx, h, W, y, chunk):
        n = h.shape[0]
        lse = torch.empty(n, dtype=h.dtype, device=h.device)
        for s in range(0, n, chunk):
            lse[s: s + chunk] = torch.logsumexp(h[s: s + chunk] @ W.T, dim=1)
        target_logit = (h * W[y]).sum(-1)
        ctx.save_for_backward(h, W, y, lse)
        ctx.chunk = chunk
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad):
        h, W, y, lse = ctx.saved_tensors
        n, chunk = h.shape[0], ctx.chunk
        scale = grad / n
        grad_h = torch.empty_like(h)
        grad_W = torch.zeros_like(W)
        for s in range(0, n, chunk):
            hc, yc = h[s: s + chunk], y[s: s + chunk]
            p = (hc @ W.T).sub_(lse[s: s + chunk, None]).exp_()
            p[torch.arange(len(yc), device=p.device), yc] -= 1.0
            p.mul_(scale)
            grad_h[s: s + chunk] = p @ W
            grad_W.addmm_(p.T, hc)
        return grad_h, grad_W, None, None


def full_ce(hidden: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Full-softmax cross-entropy. hidden (N, d), weights (V, d), targets (N,) in 1..V.

    Same value and gradients as ``F.cross_entropy(hidden @ weights.T, targets - 1)`` (tested),
    computed in row chunks on CPU; on GPU the plain form is already fast.
    """
    if hidden.is_cuda or chunk <= 0:
        return F.cross_entropy(hidden @ weights.T, targets - 1)
    return _ChunkedLinearCE.apply(hidden, weights, targets - 1, chunk)


def sampled_ce(hidden: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, num_negatives: int,
               log_q: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sampled softmax with logQ correction (for catalogs too large for the full softmax).

    Negatives are drawn from ``q`` (uniform if ``log_q`` is None, else ``exp(log_q)``, e.g. item
    popularity = in-batch-like negatives); subtracting ``log q`` from every logit makes the
    estimate consistent with the full softmax. A negative equal to the target is masked.
    """
    V = weights.shape[0]
    if log_q is None:
        neg = torch.randint(0, V, (num_negatives,), generator=generator, device=hidden.device)
    else:
        neg = torch.multinomial(log_q.exp(), num_negatives, replacement=True, generator=generator)
    y = targets - 1
    pos_logit = (hidden * weights[y]).sum(-1, keepdim=True)
    neg_logit = hidden @ weights[neg].T
    if log_q is not None:
        pos_logit = pos_logit - log_q[y][:, None]
        neg_logit = neg_logit - log_q[neg][None, :]
    neg_logit = neg_logit.masked_fill(neg[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=hidden.device))
