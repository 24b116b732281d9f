import numpy as np
import pytest
import torch

from saerec.model.interface import last_of
import torch.nn.functional as F

from saerec.config import ModelConfig
from saerec.eval.ranking import recommend
from saerec.model import GPTRec, Intervention
from saerec.model.checkpoint import load_model, save_model
from saerec.train.loss import full_ce, sampled_ce


def small_model(seed=0, max_len=12, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layers=2, n_heads=2, d_model=16, max_len=max_len, dropout=0.0, **kw)
    return GPTRec(cfg, n_items=30).eval()


def test_causal_later_items_never_change_earlier_outputs():
    model = small_model()
    x = torch.randint(1, 31, (3, 10))
    y = x.clone()
    y[:, 6:] = torch.randint(1, 31, (3, 4))
    out_x = model(x, capture=["block.0"])
    out_y = model(y, capture=["block.0"])
    assert torch.allclose(out_x.hidden[:, :6], out_y.hidden[:, :6], atol=1e-6)
    assert torch.allclose(out_x.captured["block.0"][:, :6], out_y.captured["block.0"][:, :6], atol=1e-6)
    assert not torch.allclose(out_x.hidden[:, 6:], out_y.hidden[:, 6:])


def test_padding_does_not_change_real_positions():
    model = small_model()
    x = torch.randint(1, 31, (1, 5))
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1)
    a = model(x, torch.tensor([5])).hidden
    b = model(padded, torch.tensor([5])).hidden[:, :5]
    assert torch.allclose(a, b, atol=1e-6)


def test_intervention_identity_and_last_position_only():
    model = small_model()
    x = torch.randint(1, 31, (4, 8))
    lengths = torch.tensor([8, 5, 3, 8])
    x[1, 5:] = 0
    x[2, 3:] = 0
    base = model(x, lengths).hidden
    same = model(x, lengths, interventions={"block.0": Intervention(lambda h, where: h)}).hidden
    assert torch.equal(base, same)
    edited = model(x, lengths, interventions={"block.0": Intervention(lambda h, where: h + 5.0, "last")}).hidden
    for r, L in enumerate(lengths.tolist()):
        assert torch.allclose(edited[r, : L - 1], base[r, : L - 1], atol=1e-6)   # causal: earlier untouched
        assert not torch.allclose(edited[r, L - 1], base[r, L - 1])


def test_intervention_rows_allow_per_user_edits():
    model = small_model()
    x = torch.randint(1, 31, (2, 6))
    seen = {}

    def fn(h, where):
        seen["rows"], seen["last"] = where.rows.tolist(), where.last.tolist()
        return h * torch.tensor([1.0, 0.0])[where.rows][:, None]   # zero only user 1's state

    out = model(x, interventions={"block.1": Intervention(fn, "last")}, capture=["block.1"])
    assert seen["rows"] == [0, 1] and seen["last"] == [True, True]
    assert torch.count_nonzero(out.captured["block.1"][1, -1]) == 0
    assert torch.count_nonzero(out.captured["block.1"][0, -1]) > 0


def test_unknown_state_name_is_a_clear_error():
    with pytest.raises(KeyError, match="known"):
        small_model()(torch.ones(1, 3, dtype=torch.long), capture=["block.9"])


def test_chunked_ce_equals_cross_entropy_values_and_grads():
    torch.manual_seed(0)
    h = torch.randn(300, 16, requires_grad=True)
    W = torch.randn(50, 16, requires_grad=True)
    y = torch.randint(1, 51, (300,))
    ref = F.cross_entropy(h @ W.T, y - 1)
    gh, gW = torch.autograd.grad(ref, (h, W))
    ours = full_ce(h, W, y, chunk=64)
    oh, oW = torch.autograd.grad(ours, (h, W))
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(oh, gh, atol=1e-6) and torch.allclose(oW, gW, atol=1e-6)
    # a loss scaled downstream scales the gradients computed in the forward pass
    oh2, _ = torch.autograd.grad(3.0 * full_ce(h, W, y, chunk=64), (h, W))
    assert torch.allclose(oh2, 3 * gh, atol=1e-6)
    with torch.no_grad():                                   # validation: the value alone
        assert torch.allclose(full_ce(h, W, y, chunk=64), ref, atol=1e-5)


def test_sampled_ce_with_all_items_as_negatives_approaches_full_ce():
    torch.manual_seed(0)
    h, W = torch.randn(64, 8), torch.randn(20, 8)
    y = torch.randint(1, 21, (64,))
    full = F.cross_entropy(h @ W.T, y - 1)
    # uniform q: logQ is a constant shift; with many draws every item is a negative at least once,
    # duplicates add log(count) so compare against a loose bound and check finiteness
    s = sampled_ce(h, W, y, num_negatives=400, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(s) and s > full


def test_checkpoint_round_trip_gives_identical_scores(tmp_path):
    model = small_model(seed=3)
    inputs = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8]), np.array([9])]
    before = recommend(model, inputs, k=5)
    with torch.no_grad():
        h1 = model.scores(last_of(model(torch.tensor([[1, 2, 3]])).hidden, torch.tensor([3])))
    save_model(tmp_path, model, {"note": "x"})
    loaded, meta = load_model(tmp_path)
    assert meta["note"] == "x" and meta["n_items"] == 30
    with torch.no_grad():
        h2 = loaded.scores(last_of(loaded(torch.tensor([[1, 2, 3]])).hidden, torch.tensor([3])))
    assert torch.equal(h1, h2)
    assert np.array_equal(before, recommend(loaded, inputs, k=5))


def test_recommend_excludes_seen_items():
    model = small_model(max_len=32)
    inputs = [np.arange(1, 26)]                     # 25 of 30 items seen
    top = recommend(model, inputs, k=5)[0]
    assert set(top) == {26, 27, 28, 29, 30}


@pytest.mark.parametrize("name", ["embed", "block.0", "block.1", "final"])
def test_last_step_replay_equals_full_forward_with_a_last_position_edit(name):
    model = small_model()
    lengths = torch.tensor([5, 12, 1, 8])
    x = torch.randint(1, 31, (4, 12)) * (torch.arange(12)[None] < lengths[:, None])
    cache = model.prefill_last(x, lengths, name)
    pushes = torch.randn(4, 3, 16)
    pushes[:, 0] = 0
    replayed = model.replay_last(cache, cache.state[:, None] + pushes)
    for v in range(3):
        iv = Intervention(lambda h, where, v=v: h + pushes[where.rows, v], "last")
        full = last_of(model(x, lengths, interventions={name: iv}).hidden, lengths)
        assert torch.allclose(replayed[:, v], full, atol=1e-5), (name, v)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("name, positions", [(None, None), ("embed", "all"), ("block.0", "all"),
                                             ("block.0", "last"), ("last block", "all"), ("final", "last")])
def test_forward_last_equals_the_full_forward_at_the_last_position(n_layers, name, positions):
    """The shortened last block (what recommendations use) gives the full model's last vectors,
    with an intervention anywhere, including on the last block's output at every position."""
    torch.manual_seed(0)
    model = GPTRec(ModelConfig(n_layers=n_layers, n_heads=2, d_model=16, max_len=12, dropout=0.0), 30).eval()
    name = f"block.{n_layers - 1}" if name == "last block" else name
    lengths = torch.tensor([5, 12, 1, 8])
    x = torch.randint(1, 31, (4, 12)) * (torch.arange(12)[None] < lengths[:, None])
    ivs = {name: Intervention(lambda h, w: 2 * h + w.rows[:, None] + w.cols[:, None], positions)} if name else None
    with torch.no_grad():
        full = last_of(model(x, lengths, interventions=ivs).hidden, lengths)
        short = model.forward_last(x, lengths, interventions=ivs)
    assert torch.allclose(short, full, atol=1e-5)
    if name is not None:                             # the intervention really acts
        assert not torch.allclose(short, model.forward_last(x, lengths), atol=1e-3)


def test_cpu_dropout_keeps_1_minus_p_scales_and_masks_its_gradient():
    from saerec.model.dropout import Dropout

    x = torch.randn(200, 500, requires_grad=True)
    torch.manual_seed(0)
    drop = Dropout(0.1).train()
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.9))
    torch.manual_seed(0)                                   # torch's seed fixes the masks
    assert torch.equal(Dropout(0.1).train()(x) != 0, kept)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("name", [None, "block.0", "block.1", "final"])
def test_traced_blocks_give_the_eager_outputs_with_interventions_between_them(name):
    """Serving swaps GPTRec's blocks for TorchScript traces: same numbers, interventions still apply."""
    import copy

    from saerec.model.traced import trace_blocks

    model = small_model(max_len=40)
    traced = copy.deepcopy(model)
    assert trace_blocks(traced)
    assert all(isinstance(b.traced, torch.jit.ScriptModule) for b in traced.blocks)
    lengths = torch.tensor([5, 33, 1, 17])
    x = torch.randint(1, 31, (4, 33)) * (torch.arange(33)[None] < lengths[:, None])
    ivs = {name: Intervention(lambda h, w: 2 * h + w.rows[:, None], "last")} if name else None
    with torch.no_grad():
        assert torch.equal(traced.forward_last(x, lengths, interventions=ivs),
                           model.forward_last(x, lengths, interventions=ivs))
        assert torch.equal(traced(x, lengths, interventions=ivs).hidden, model(x, lengths, interventions=ivs).hidden)
        cache, eager_cache = traced.prefill_last(x, lengths, "block.0"), model.prefill_last(x, lengths, "block.0")
        state = cache.state[:, None].repeat(1, 3, 1) * torch.tensor([0.5, 1.0, 2.0])[None, :, None]
        assert torch.equal(traced.replay_last(cache, state), model.replay_last(eager_cache, state))


def test_compiled_pass_matches_eager_and_leaves_edits_it_was_not_built_for_to_eager(monkeypatch):
    """Opt-in compiled serving (AOTInductor): close to the eager scores for both settings of seen-item
    exclusion and any batch size and length; interventions without the pass's edit module run eagerly.
    (The edited pass, with the Steerer's edit module inside, is tested in test_steer.py.)"""
    import copy

    from saerec.model import compiled

    monkeypatch.setattr(compiled, "CHECK_SHAPES", ((1, 7), (3, 23)))
    model = small_model(max_len=40)
    fast = copy.deepcopy(model)
    assert compiled.compile_scores(fast, "block.0")
    assert isinstance(fast.compiled, compiled.CompiledScores)
    lengths = torch.tensor([5, 33, 2, 17])
    x = torch.randint(1, 31, (4, 33)) * (torch.arange(33)[None] < lengths[:, None])
    edit = Intervention(lambda h, w: 2 * h + w.rows[:, None], "last")
    with torch.inference_mode():
        assert fast.compiled(x, lengths) is not None                                      # compiled
        for exclude in (True, False):
            got, want = fast.last_scores(x, lengths, None, exclude), model.last_scores(x, lengths, None, exclude)
            assert torch.equal(got.isinf(), want.isinf()) and (want.isinf().any() == exclude)
            assert torch.allclose(got[want.isfinite()], want[want.isfinite()], atol=1e-5)
        for ivs in ({"block.0": edit}, {"block.0": Intervention(edit.fn, "all")}, {"final": edit}):  # eager
            assert fast.compiled(x, lengths, ivs) is None
            assert torch.equal(fast.last_scores(x, lengths, ivs), model.last_scores(x, lengths, ivs))
        fast.train()
        assert fast.compiled(x, lengths) is None                                          # training: eager
        fast.eval()
    inputs = [np.random.default_rng(i).integers(1, 31, size=n) for i, n in enumerate((3, 9, 40, 1, 12))]
    assert np.array_equal(recommend(fast, inputs, k=5), recommend(model, inputs, k=5))
