"""Mixed precision (train.precision / sae_train.precision): bf16 autocast gives fp32's answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saerec.config import RunConfig, TrainConfig, apply_overrides
from saerec.errors import UsageError
from saerec.precision import compute_dtype
from saerec.train.loss import full_ce


def test_precision_choices():
    assert compute_dtype("auto", "cpu") is None and compute_dtype("fp32", "cuda") is None
    assert compute_dtype("auto", "cuda") is torch.bfloat16 and compute_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(UsageError, match="train.precision: 'fp16' is not one of 'auto', 'fp32', 'bf16'"):
        apply_overrides(RunConfig(), ["train.precision=fp16"])
    with pytest.raises(UsageError, match="sae_train.precision"):
        apply_overrides(RunConfig(), ["sae_train.precision=half"])


def test_fused_ce_under_bf16_autocast_matches_fp32():
    """The CPU fused CE runs its GEMMs in bf16 under autocast and its softmax in fp32: value and
    gradients within bf16's rounding of the fp32 ones, and not bit-identical (bf16 really ran)."""
    torch.manual_seed(0)
    h = torch.randn(600, 32, requires_grad=True)
    W = (0.5 * torch.randn(400, 32)).requires_grad_()
    y = torch.randint(1, 401, (600,))
    ref = F.cross_entropy(h @ W.T, y - 1)
    gh, gW = torch.autograd.grad(ref, (h, W))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = full_ce(h, W, y, chunk=128)
    oh, oW = torch.autograd.grad(ours, (h, W))
    assert ours.dtype == torch.float32 and oh.dtype == torch.float32
    assert abs(float(ours) - float(ref)) < 2e-3 * float(ref) and float(ours) != float(ref)
    for a, b in ((oh, gh), (oW, gW)):
        assert float((a - b).norm() / b.norm()) < 2e-2


def test_bf16_training_epoch_matches_fp32(trained_run):
    """An epoch of GPTRec training under bf16 autocast from the same weights gives a loss within 1%
    of fp32's, and not the same loss (bf16 really ran)."""
    from saerec.data.prepare import read_sequences
    from saerec.model.checkpoint import load_model, model_index
    from saerec.train.batching import bucket_batches, make_windows
    from saerec.train.loop import train_epoch

    run, cfg = trained_run
    model, _ = load_model(run.recommender)
    windows = make_windows(read_sequences(run, "rec", model_index(run.recommender)), model.max_len, "all")
    tc = TrainConfig(batch_tokens=2048)
    batches = bucket_batches(np.array([len(w) - 1 for w in windows]), tc.batch_tokens, np.random.default_rng(0))
    losses = []
    for dtype in (None, torch.bfloat16):
        m, _ = load_model(run.recommender)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        torch.manual_seed(0)                                    # the same dropout masks
        losses.append(train_epoch(m, opt, windows, batches[:8], tc, dtype=dtype).loss)
    assert np.isfinite(losses).all() and losses[0] != losses[1]
    assert abs(losses[1] - losses[0]) < 0.01 * losses[0]


def test_attention_runs_fp32_under_cpu_autocast():
    """CPU bf16 flash-attention backward is several times slower than fp32's (docs/benchmarks.md),
    so under CPU autocast the attention itself runs in fp32 on the (bf16) projections' outputs,
    gradients included; outside autocast it is plain SDPA."""
    from saerec.model.attention import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=g).to(torch.bfloat16).requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(q, k, v, is_causal=True)
    assert y.dtype == torch.float32
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    x = torch.randn(2, 2, 6, 8, generator=g)
    assert torch.equal(attention(x, x, x, is_causal=True), F.scaled_dot_product_attention(x, x, x, is_causal=True))


def test_rankings_stay_fp32_inside_an_autocast_region(trained_run):
    """The autocast paths are training steps only: a ranking (validation, evaluation, serving) asked
    for in fp32 gives fp32's top-10 lists even when called inside a caller's bf16 autocast region,
    for every test user (the issue's bar: >= 99%). Without the guard the lists reorder."""
    from saerec.eval.ranking import recommend
    from saerec.model.checkpoint import load_model, test_pairs

    run, _ = trained_run
    model, _ = load_model(run.recommender)
    test = test_pairs(run, model.max_len, 1)
    fp32 = recommend(model, test.inputs, k=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = recommend(model, test.inputs, k=10)
    bf16 = recommend(model, test.inputs, k=10, dtype=torch.bfloat16)
    assert (inside == fp32).all(1).mean() == 1.0
    assert (bf16 == fp32).all(1).mean() < 1.0            # bf16 does reorder this model's lists
