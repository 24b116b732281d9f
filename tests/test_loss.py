"""Sampled softmax against independent formulas: with every item drawn once it is the full softmax
(``F.cross_entropy``), and its logQ correction turns a popularity-skewed sample into an estimate of
the uniform-weight normaliser."""

import math

import pytest
import torch
import torch.nn.functional as F

from saerec.train.loss import sampled_ce


def problem(seed=0, n=48, V=30, d=8):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    W = torch.randn(V, d, generator=g, requires_grad=True)
    y = torch.randint(1, V + 1, (n,), generator=g)
    return h, W, y


def skewed_log_q(V, seed=0):
    """A popularity-like (Zipf) sampling distribution, in a random item order."""
    q = 1.0 / torch.arange(1, V + 1, dtype=torch.float32)
    q = q[torch.randperm(V, generator=torch.Generator().manual_seed(seed))]
    return (q / q.sum()).log()


@pytest.mark.parametrize("log_q", ["none", "uniform"])
def test_sampled_ce_with_every_item_drawn_once_is_the_full_softmax(log_q):
    """Every item once as a negative (the target masked there, present as the positive): the sampled
    logits are the full logits, so value and gradients are ``F.cross_entropy``'s; a uniform logQ
    shifts every logit by the same constant and changes nothing."""
    h, W, y = problem()
    V = W.shape[0]
    lq = None if log_q == "none" else torch.full((V,), -math.log(V))
    every = torch.randperm(V, generator=torch.Generator().manual_seed(1))
    got = sampled_ce(h, W, y, V, log_q=lq, negatives=every)
    want = F.cross_entropy(h @ W.T, y - 1)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (float(got), float(want))
    g_got, g_want = torch.autograd.grad(got, (h, W)), torch.autograd.grad(want, (h, W))
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-6)


def test_log_q_correction_with_every_item_once_is_the_corrected_full_softmax():
    """A non-uniform logQ subtracts log q_j from item j's logit, the positive included: with every item
    once that is ``F.cross_entropy(logits - log_q)``, which differs clearly from the uncorrected loss."""
    h, W, y = problem(1)
    V = W.shape[0]
    lq = skewed_log_q(V)
    got = sampled_ce(h, W, y, V, log_q=lq, negatives=torch.arange(V))
    want = F.cross_entropy(h @ W.T - lq, y - 1)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (float(got), float(want))
    with torch.no_grad():                                                   # the correction matters here
        per_row = F.cross_entropy(h @ W.T - lq, y - 1, reduction="none") - F.cross_entropy(h @ W.T, y - 1, reduction="none")
    assert per_row.abs().max() > 0.5


def test_log_q_corrected_draws_estimate_the_uniform_normaliser():
    """Drawn from a skewed q with replacement, the corrected negatives' sum Σ_k exp(s_k - log q_k)
    estimates N·Σ_{j≠y} exp(s_j) (importance weighting), so for many draws the loss tends to

        log q_y - s_y + log(exp(s_y) / q_y + N·Σ_{j≠y} exp(s_j)).

    Without the correction the sample would weigh each item by its popularity instead."""
    h, W, y = problem(2, n=32, V=40)
    V, N = W.shape[0], 200_000
    lq = skewed_log_q(V, seed=3)
    with torch.no_grad():
        got = sampled_ce(h, W, y, N, log_q=lq, generator=torch.Generator().manual_seed(0))
        s = h @ W.T                                                       # (n, V)
        rows = torch.arange(len(y))
        s_y, lq_y = s[rows, y - 1], lq[y - 1]
        others = s.clone()
        others[rows, y - 1] = float("-inf")
        limit = lq_y - s_y + torch.logaddexp(s_y - lq_y, math.log(N) + torch.logsumexp(others, 1))
    assert float(got) == pytest.approx(float(limit.mean()), abs=0.01)
