"""Next-item losses over the non-padding positions only.

Only real positions go through the output head: the (tokens x items) logits matrix is the
largest tensor in training, so skipping padding there matters more than anywhere else.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _chunked_ce_value(h, W, y, chunk, gemm_dtype=None):
    """The loss alone (no gradient wanted: validation), chunk by chunk."""
    h, W = h.float(), W.float()
    hg, Wg = (h, W) if gemm_dtype is None else (h.to(gemm_dtype), W.to(gemm_dtype))
    lse = torch.cat([torch.logsumexp((hg[s: s + chunk] @ Wg.T).float(), dim=1) for s in range(0, h.shape[0], chunk)])
    return (lse - (h * W[y]).sum(-1)).mean()


class _FusedLinearCE(torch.autograd.Function):
    """mean_n CE(softmax(h_n W^T), y_n) chunk by chunk, never holding the (N, V) logits, with the
    gradients computed during the forward pass.

    On a CPU the full logits matrix (8k tokens x 3.6k items = 115 MB) makes log-softmax and its
    backward memory-bound; chunks of a few hundred rows stay in cache. The loss is the last op of
    a training step, so its backward only scales by one scalar: each chunk's softmax turns into its
    share of dL/dh and dL/dW while it is in cache. A backward that recomputed the chunk's logits
    would cost one more GEMM and exp per chunk (4 GEMMs instead of 3; 1.2x slower steps, measured).

    ``gemm_dtype`` (bf16 under autocast): the three GEMMs run in it, the softmax, the loss and the
    gradient sums in fp32 (autocast is off inside, so every cast is explicit).
    """

    @staticmethod
    def forward(ctx, h, W, y, chunk, gemm_dtype=None):
        ctx.h_dtype = h.dtype
        h = h.float()
        n = h.shape[0]
        grad_h = torch.empty_like(h)
        grad_W = torch.zeros_like(W)
        total = h.new_zeros(())
        inv_n = 1.0 / max(n, 1)
        hg, Wg = (h, W) if gemm_dtype is None else (h.to(gemm_dtype), W.to(gemm_dtype))
        for s in range(0, n, chunk):
            hc, yc = hg[s: s + chunk], y[s: s + chunk]
            logits = (hc @ Wg.T).float()
            rows = torch.arange(len(yc), device=h.device)
            target = logits[rows, yc]
            top = logits.amax(dim=1)
            p = logits.sub_(top[:, None]).exp_()               # one exp per logit, in the logits' memory
            z = p.sum(dim=1)
            total += (top + z.log() - target).sum()            # log-sum-exp minus the target logit
            p.mul_((inv_n / z)[:, None])                        # softmax / n
            p[rows, yc] -= inv_n
            if gemm_dtype is None:
                torch.mm(p, W, out=grad_h[s: s + chunk])
                grad_W.addmm_(p.T, hc)
            else:
                pg = p.to(gemm_dtype)
                grad_h[s: s + chunk] = pg @ Wg
                grad_W += pg.T @ hc
        ctx.save_for_backward(grad_h, grad_W)
        return total * inv_n

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_W = ctx.saved_tensors
        return (grad_h * grad).to(ctx.h_dtype), grad_W * grad, None, None, None


def full_ce(hidden: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Full-softmax cross-entropy. hidden (N, d), weights (V, d), targets (N,) in 1..V.

    Same value and gradients as ``F.cross_entropy(hidden @ weights.T, targets - 1)`` (tested),
    computed in row chunks on CPU; on GPU the plain form is already fast (and autocast makes its
    GEMM bf16 and its softmax fp32). Under CPU autocast the chunks' GEMMs run in its dtype.
    """
    if hidden.is_cuda or chunk <= 0:
        return F.cross_entropy(hidden @ weights.T, targets - 1)
    kind = hidden.device.type
    gemm = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    with torch.autocast(kind, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weights.requires_grad):
            return _FusedLinearCE.apply(hidden, weights, targets - 1, chunk, gemm)
        return _chunked_ce_value(hidden, weights, targets - 1, chunk, gemm)


def sampled_ce(hidden: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, num_negatives: int,
               log_q: torch.Tensor | None = None, generator: torch.Generator | None = None,
               negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax with logQ correction (for catalogs too large for the full softmax).

    Negatives are drawn from ``q`` (uniform if ``log_q`` is None, else ``exp(log_q)``, e.g. item
    popularity = in-batch-like negatives); subtracting ``log q`` from every logit makes the
    estimate consistent with the full softmax. A negative equal to the target is masked.
    ``negatives``: 0-based item indices to use instead of drawing (so a test can give every item
    exactly once and compare with the full softmax).
    """
    V = weights.shape[0]
    if negatives is not None:
        neg = negatives.to(hidden.device)
    elif log_q is None:
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
