"""SAE family: planted-direction recovery, batch independence, normalisation round trip, checkpoints."""

import pytest
import torch

from saerec.errors import UsageError
from saerec.sae import SAEConfig, build_sae, load_sae, save_sae
from saerec.sae.normalize import NormStats
from saerec.sae.trainer import ReconStats, make_optimizer, train_steps


def planted(n=40_000, d=16, n_dirs=24, active=3, seed=0):
    """x = sum of a few planted unit directions with positive magnitudes (+ small noise)."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_dirs, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    idx = torch.rand(n, n_dirs, generator=g).argsort(1)[:, :active]
    codes = torch.zeros(n, n_dirs).scatter(1, idx, 1.0 + torch.rand(n, active, generator=g) * 2)
    x = codes @ D + 0.01 * torch.randn(n, d, generator=g)
    return x, D


def fit(kind, x, epochs=6, **kw):
    cfg = SAEConfig(kind=kind, n_latents=64, lr=3e-3, batch_size=256, dead_window=20_000, seed=1, **kw)
    sae = build_sae(x.shape[1], cfg)
    sae.init_from_sample(x[:4096])
    opt = make_optimizer(sae)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        train_steps(sae, opt, (x[perm[i:i + 256]] for i in range(0, len(x), 256)))
    return sae.eval()


# sparsity weights sized for this unnormalised data (|x|^2 ~ 12 per row): 3 true directions per row
@pytest.mark.parametrize("kind, kw", [
    ("relu", {"l1": 1.0}),
    ("topk", {"k": 3}),
    ("batchtopk", {"k": 3}),
    ("jumprelu", {"l0": 1.0, "jump_init_threshold": 0.5, "jump_bandwidth": 0.5}),
])
def test_each_kind_recovers_planted_directions(kind, kw):
    torch.manual_seed(0)
    x, D = planted()
    sae = fit(kind, x, **kw)
    cos = (D @ sae.W_dec.detach().T)                         # (planted, latents), rows unit norm
    recovered = (cos.max(1).values >= 0.9).float().mean()
    assert recovered >= 0.8, f"{kind}: only {recovered:.0%} of planted directions recovered"
    with torch.no_grad():
        stats = ReconStats(sae.cfg.n_latents)
        f = sae.encode(x[:5000])
        stats.update(x[:5000], sae.decode(f), f)
    assert stats.result()["explained_variance"] > 0.6


@pytest.mark.parametrize("kind, kw", [
    ("relu", {"l1": 0.1}), ("relu", {"l1": 3.0}),
    ("topk", {"k": 8}), ("topk", {"k": 100}),        # k 100: some rows keep zeros (no gradient through them)
    ("batchtopk", {"k": 8}), ("matryoshka", {"k": 8}),
])
def test_hand_written_gradients_equal_autograd(kind, kw):
    """ReLU-L1 and the TopK kinds train with hand-written gradients (faster; sparse in k for TopK);
    they must be autograd's, and so must the loss parts (AuxK and Matryoshka's prefixes included),
    the dead-latent counters and BatchTopK's threshold."""
    torch.manual_seed(0)
    cfg = SAEConfig(kind=kind, n_latents=128, dead_window=64, **kw)      # unfired in the batch: dead, so AuxK runs
    a, b = build_sae(16, cfg), build_sae(16, cfg)
    x = torch.randn(64, 16) * 2
    a.init_from_sample(x)
    with torch.no_grad():
        a.b_enc.normal_(std=0.5)                    # some latents dead in this batch, some alive
    b.load_state_dict(a.state_dict())
    a.train()
    out = a(x)
    out.loss.backward()
    parts = b.loss_and_grads(x)
    assert b.has_manual_grads()
    assert parts.keys() == out.parts.keys() and ("auxk" in parts) == (kind != "relu")
    for k in parts:
        assert torch.allclose(parts[k], out.parts[k].detach(), rtol=1e-5), k
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6 * float(p.grad.abs().max())), name
    for (name, u), v in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(u, v), name
    assert 0 < int((a.since_fired == 0).sum()) < 128
    for p, q in zip(a.parameters(), b.parameters()):
        assert q.grad.stride() == p.stride()        # laid out as the weight (fused Adam needs it)
    assert not build_sae(16, SAEConfig(kind=kind, recon="l2")).has_manual_grads()      # falls back to autograd


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "matryoshka"])
def test_topk_kinds_start_with_reconstructions_at_the_inputs_size(kind):
    """Hand-made case: 512 latents on 16 dimensions, k=4. After ``init_from_sample`` the codes
    training starts from (the row's / the batch's top k) reconstruct at the inputs' size. Sized on
    BatchTopK's inference path instead (its threshold is unset: a plain ReLU, half the latents
    fire), the encoder starts several times too small and most latents never fire (ML-1M: 74%
    dead, docs/sae-eval.md). BatchTopK's threshold is left for training to estimate."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g) * 3 + 1
    sae = build_sae(16, SAEConfig(kind=kind, n_latents=512, k=4))
    sae.init_from_sample(x)
    if kind != "topk":
        assert float(sae.threshold) == -1.0
    with torch.no_grad():
        got = (sae.decode(sae.train_codes(sae.pre_acts(x))) - sae.b_dec).norm(dim=1).mean()
        want = (x - sae.b_dec).norm(dim=1).mean()
    assert float(got / want) == pytest.approx(1.0, rel=1e-3)


def test_matryoshka_auxk_weight_counts_its_reconstruction_losses():
    """Hand-made case: the same weights, dead latents and batch through BatchTopK and a 3-prefix
    Matryoshka. Matryoshka's loss sums 3 reconstruction losses, so its AuxK term must weigh 3x
    BatchTopK's (autograd and hand-written paths), or its dead latents are pulled back 3x weaker."""
    cfg = dict(n_latents=64, k=4, dead_window=32, auxk_alpha=0.5)
    b = build_sae(8, SAEConfig(kind="batchtopk", **cfg))
    m = build_sae(8, SAEConfig(kind="matryoshka", matryoshka_prefixes=[0.25, 0.5, 1.0], **cfg))
    m.load_state_dict(b.state_dict())
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    for sae in (b, m):
        sae.since_fired[::2] = 1000                           # half the latents dead before the batch
    with torch.no_grad():
        pre = b.pre_acts(x)
        x_hat = b.decode(b.train_codes(pre))
        ratio = m.aux_loss(x, x_hat, pre) / b.aux_loss(x, x_hat, pre)
    assert float(ratio) == pytest.approx(3.0, rel=1e-6)
    assert float(m.loss_and_grads(x)["auxk"] / b.loss_and_grads(x)["auxk"]) == pytest.approx(3.0, rel=1e-5)


def test_batchtopk_inference_is_batch_independent():
    x, _ = planted(n=8000)
    sae = fit("batchtopk", x, epochs=2, k=3)
    assert sae.threshold > 0
    with torch.no_grad():
        alone = torch.cat([sae.encode(x[i:i + 1]) for i in range(50)])
        together = sae.encode(x[:50])
        shuffled = sae.encode(torch.cat([x[25:50], x[:25]]))
        unshuffled = torch.cat([shuffled[25:], shuffled[:25]])
        # the training path *is* batch-coupled: a row alone keeps k latents, in a batch it competes
        pre = sae.pre_acts(x[:50])
        train_alone = torch.cat([sae.train_codes(pre[i:i + 1]) for i in range(50)])
        train_together = sae.train_codes(pre)
    # same active latents, same values up to float rounding (a 1-row matmul takes another kernel)
    assert torch.equal(alone > 0, together > 0) and torch.allclose(alone, together, atol=1e-5)
    assert torch.equal(together > 0, unshuffled > 0) and torch.allclose(together, unshuffled, atol=1e-5)
    assert not torch.equal(train_alone > 0, train_together > 0)


def test_matryoshka_loss_sums_prefix_reconstructions():
    """Hand-made case: 4 latents on 2 dimensions, prefixes 1, 2, 4 latents; unit decoder rows along
    the axes, codes chosen by hand. Each prefix's error is worked out on paper."""
    from saerec.sae.matryoshka import MatryoshkaSAE, prefix_sizes

    assert prefix_sizes(2048, [0.0625, 0.25, 1.0]) == [128, 512, 2048]
    assert prefix_sizes(4, [0.1, 0.2, 1.0]) == [1, 4]            # rounding collisions dropped
    sae = build_sae(2, SAEConfig(kind="matryoshka", n_latents=4, matryoshka_prefixes=[0.25, 0.5, 1.0]))
    assert isinstance(sae, MatryoshkaSAE) and sae.prefixes == [1, 2, 4]
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        sae.b_dec.zero_()
    x = torch.tensor([[3.0, 4.0]])
    f = torch.tensor([[1.0, 2.0, 2.0, 2.0]])
    # prefix 1: x_hat (1, 0) -> err 2^2 + 4^2 = 20; prefix 2: (1, 2) -> 4 + 4 = 8; full (3, 4) -> 0
    assert float(sae.prefix_losses(x, f).detach()) == pytest.approx(28.0)
    with pytest.raises(UsageError, match="matryoshka_prefixes"):
        SAEConfig(kind="matryoshka", matryoshka_prefixes=[0.5, 0.25, 1.0])
    with pytest.raises(UsageError, match="matryoshka_prefixes"):
        SAEConfig(kind="matryoshka", matryoshka_prefixes=[0.25, 0.5])


def test_matryoshka_first_prefix_learns_the_most_general_direction():
    """Known answer: a "parent" direction fires on half the rows (with one of 12 "child" directions
    on every row). The first prefix is one latent that must reconstruct alone, so it can only learn
    the parent; plain BatchTopK (one prefix) has no reason to put it at latent 0."""
    g = torch.Generator().manual_seed(3)
    d, n = 16, 12_000
    D = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:13]          # orthonormal: parent + 12 children
    child = torch.randint(0, 12, (n,), generator=g)
    codes = torch.zeros(n, 13)
    codes[torch.arange(n), 1 + child] = 1.0 + torch.rand(n, generator=g)
    codes[:, 0] = (torch.rand(n, generator=g) < 0.5) * (2.0 + torch.rand(n, generator=g))
    x = codes @ D
    sae = fit("matryoshka", x, epochs=3, k=2, matryoshka_prefixes=[1 / 64, 0.25, 1.0])
    assert sae.prefixes[0] == 1
    assert float((sae.W_dec[0].detach() @ D[0]).abs()) > 0.9


@pytest.mark.parametrize("mode", ["global", "per_dim"])
def test_normalisation_round_trips_and_streams(mode):
    x = torch.randn(1000, 8) * torch.arange(1, 9) + 5
    st = NormStats(mode)
    for chunk in x.split(97):
        st.update(chunk)
    norm = st.finish()
    z = norm(x)
    assert torch.allclose(norm.inverse(z), x, atol=1e-4)
    if mode == "global":
        assert norm.mean.ndim == 0
        assert abs(float(z.mean())) < 1e-4 and abs(float(z.std(unbiased=False)) - 1) < 1e-3
    else:
        assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-4)


@pytest.mark.parametrize("kind", ["relu", "topk", "batchtopk", "jumprelu", "matryoshka"])
def test_checkpoint_round_trip_restores_every_kind(tmp_path, kind):
    """Every tensor of the state (weights, biases, the dead-latent counters, BatchTopK's inference
    threshold, JumpReLU's per-latent thresholds), the config and a per-dimension normaliser come back
    exactly, so the loaded SAE encodes and decodes bit for bit like the saved one. The state is
    randomised first, so no value can come back right by being a constructor default."""
    d = 12
    sae = build_sae(d, SAEConfig(kind=kind, n_latents=48, k=5, l1=0.3, jump_bandwidth=0.2, seed=4))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in sae.state_dict().items():
            if t.dtype == torch.long:
                t.copy_(torch.randint(0, 1000, t.shape, generator=g))
            elif name == "log_threshold":
                t.copy_(torch.randn(t.shape, generator=g) * 0.3 - 1.0)
            elif name == "threshold":
                t.fill_(0.37)
            else:
                t.copy_(torch.randn(t.shape, generator=g))
    st = NormStats("per_dim")
    st.update(torch.randn(500, d, generator=g) * torch.arange(1, d + 1) + 3)
    sae.normalizer = st.finish()
    sae.eval()
    save_sae(tmp_path, sae, {"layer": "block.1"})
    loaded, meta = load_sae(tmp_path)

    assert type(loaded) is type(sae) and loaded.cfg == sae.cfg and meta["layer"] == "block.1"
    want, got = sae.state_dict(), loaded.state_dict()
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    assert {"relu": set(), "topk": set(), "batchtopk": {"threshold"}, "jumprelu": {"log_threshold"},
            "matryoshka": {"threshold"}}[kind] <= set(got)
    assert loaded.normalizer.mode == "per_dim"
    assert torch.equal(loaded.normalizer.mean, sae.normalizer.mean) and torch.equal(loaded.normalizer.std, sae.normalizer.std)
    x = torch.randn(200, d, generator=g) * 4 + 3
    with torch.no_grad():
        f = sae.encode(sae.normalizer(x))
        assert 0 < int((f > 0).sum()) < f.numel()                  # thresholds decide: some codes on, some off
        assert torch.equal(loaded.encode(loaded.normalizer(x)), f)
        assert torch.equal(loaded.normalizer.inverse(loaded.decode(f)), sae.normalizer.inverse(sae.decode(f)))


def test_decoder_rows_stay_unit_norm():
    x, _ = planted(n=3000)
    sae = fit("relu", x, epochs=1)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)


def test_shard_cache_replays_every_recorded_row_once_in_new_block_orders(tmp_path):
    from saerec.sae.shard_cache import ShardCache

    rows = torch.arange(10_000 * 3, dtype=torch.float32).reshape(10_000, 3)
    cache = ShardCache(tmp_path, block_rows=1000)
    streamed = []
    stream = lambda: iter(rows.split(700))                       # noqa: E731 - Ray Data's blocks
    passed = list(cache.blocks(stream, torch.Generator().manual_seed(0)))
    assert cache.complete and torch.equal(torch.cat(passed), rows)   # the first epoch passes through
    never = lambda: streamed.append(1) or iter(())               # noqa: E731
    orders = []
    for seed in (1, 2):
        got = list(cache.blocks(never, torch.Generator().manual_seed(seed)))
        assert all(len(b) == 1000 for b in got)
        cat = torch.cat(got)
        assert torch.equal(cat[cat[:, 0].argsort()], rows)       # every row once, values intact
        orders.append([int(b[0, 0]) for b in got])
    assert not streamed and orders[0] != orders[1]               # replayed from disk, new order per epoch
    cache.close()
    assert not any(tmp_path.iterdir())


def test_shard_cache_streams_again_after_an_unfinished_pass(tmp_path):
    from saerec.sae.shard_cache import ShardCache

    rows = torch.ones(50, 4)
    cache = ShardCache(tmp_path, block_rows=16)
    it = cache.blocks(lambda: iter(rows.split(10)), torch.Generator())
    next(it)                                                     # the epoch dies after one block
    assert not cache.complete
    assert len(torch.cat(list(cache.blocks(lambda: iter(rows.split(10)), torch.Generator())))) == 50
    assert cache.complete and cache.rows == 50
    cache.close()


def test_shuffled_batches_use_every_row_once_and_mix_blocks():
    from saerec.sae.trainer import shuffled_batches

    rows = torch.arange(10_000, dtype=torch.float32)[:, None]
    blocks = list(rows.split(1000))                              # ten "files" in order
    out = list(shuffled_batches(iter(blocks), 64, 3000, torch.Generator().manual_seed(0)))
    got = torch.cat(out)[:, 0]
    assert all(len(b) == 64 for b in out) and len(got) == 10_000 // 64 * 64
    assert len(torch.unique(got)) == len(got)                    # no row twice
    first = out[0][:, 0]
    assert (first >= 1000).any() and (first < 1000).any()        # the first batch already mixes blocks
