"""The built-in architectures behind one model interface: SASRec and BERT4Rec beside GPTRec.

Each is checked against an independent computation: the query state against a plain forward pass,
the fast last-step replay against the generic fallback (one full query pass per variant), the
masked model's query against its own forward on a hand-built masked sequence; and each trains with
Ray Train and reloads from its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saerec.config import ModelConfig, TrainConfig
from saerec.eval.ranking import recommend
from saerec.model.interface import Intervention, last_of
from saerec.model.laststep import generic_prefill, generic_replay
from saerec.model.registry import build_model, objective
from saerec.train.objective import loss_on, predictions

ARCHS = ["gptrec", "sasrec", "bert4rec"]


def _model(arch: str, n_items: int = 40):
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, n_layers=2, d_model=32, max_len=12), n_items).eval()


def _batch():
    items = torch.tensor([[3, 1, 4, 1, 5, 0, 0], [9, 2, 6, 5, 3, 5, 8], [7, 0, 0, 0, 0, 0, 0]])
    return items, (items != 0).sum(1)


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_replay_and_generic_fallback_give_the_same_scores_and_lists(arch):
    model = _model(arch)
    items, lengths = _batch()
    variants = torch.randn(3, 4, 32)
    for name in ("embed", "block.0", "block.1", "final"):
        fast = model.prefill_last(items, lengths, name)
        slow = generic_prefill(model, items, lengths, name)
        a = model.scores(model.replay_last(fast, fast.state[:, None] + variants))
        b = model.scores(generic_replay(model, slow, slow.state[:, None] + variants))
        assert torch.allclose(a, b, atol=1e-5), (arch, name, (a - b).abs().max())
        assert torch.equal(a.topk(10).indices, b.topk(10).indices)


@pytest.mark.parametrize("arch", ARCHS)
def test_generic_replay_of_the_final_state_is_a_query_with_it_replaced(arch):
    """The generic fallback returns ``final`` variants without running the model: each equals a full
    query whose final state at the query position is replaced by that variant."""
    model = _model(arch)
    items, lengths = _batch()
    cache = generic_prefill(model, items, lengths, "final")
    variants = cache.state[:, None] + torch.randn(3, 4, 32)
    replayed = generic_replay(model, cache, variants)
    for v in range(4):
        iv = Intervention(lambda h, where, v=v: variants[where.rows, v].to(h.dtype), "last")
        full = model.query(items, lengths, interventions={"final": iv}).hidden
        assert torch.allclose(replayed[:, v], full, atol=1e-6), (arch, (replayed[:, v] - full).abs().max())


@pytest.mark.parametrize("arch", ["gptrec", "sasrec"])
def test_causal_query_is_the_forward_pass_at_the_last_item(arch):
    model = _model(arch)
    items, lengths = _batch()
    assert torch.allclose(model.query(items, lengths).hidden, last_of(model(items, lengths).hidden, lengths), atol=1e-5)


def test_bert4rec_query_reads_an_appended_mask_and_edits_act_there():
    model = _model("bert4rec")
    items, lengths = _batch()
    by_hand = torch.zeros(3, 8, dtype=torch.long)
    by_hand[:, :7] = items
    by_hand[torch.arange(3), lengths] = model.mask_token
    want = model(by_hand, lengths + 1).hidden[torch.arange(3), lengths]
    assert torch.allclose(model.query(items, lengths).hidden, want, atol=1e-6)
    # a "last" edit lands on the mask position, not on the last item
    seen = []
    iv = Intervention(lambda h, where: seen.append(where.cols.clone()) or h, "last")
    model.query(items, lengths, interventions={"block.0": iv})
    assert torch.equal(seen[0], lengths)
    # a full history drops its oldest item to make room for the mask
    full = torch.arange(1, 13)[None]
    q = model.query(full, torch.tensor([12])).hidden
    assert torch.allclose(q, model.query(full[:, 1:], torch.tensor([11])).hidden, atol=1e-6)


def test_masked_items_never_score_and_seen_items_are_excluded():
    model = _model("bert4rec")
    items, lengths = _batch()
    top = recommend(model, [s[s > 0].numpy() for s in items], k=10)
    assert top.max() <= model.n_items and top.min() >= 1
    for row, s in zip(top, items):
        assert not set(row.tolist()) & set(s[s > 0].tolist())


@pytest.mark.parametrize("arch, loss", [("sasrec", "bce"), ("sasrec", "ce"), ("bert4rec", "ce"), ("gptrec", "sampled")])
def test_each_objective_trains_the_model_it_names(arch, loss):
    """A few steps on a fixed batch lower the loss; the cloze objective predicts masked positions only."""
    torch.manual_seed(1)
    model = _model(arch).train()
    items, lengths = _batch()
    tgt = torch.where(items != 0, (items % 40) + 1, 0)
    cfg = TrainConfig(loss=loss, num_negatives=39)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        h, y = predictions(model, model, items, tgt, lengths, objective(model.cfg, model), cfg.mask_prob)
        loss_ = loss_on(h, model.item_weights(), y, cfg)
        opt.zero_grad()
        loss_.backward()
        opt.step()
        losses.append(float(loss_))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    if arch == "bert4rec":
        h, y = predictions(model, model, items, tgt, lengths, "cloze", 0.0)
        assert len(y) == len(lengths)                  # mask_prob 0: only the forced last position per row


@pytest.mark.parametrize("arch, loss", [("sasrec", "bce"), ("bert4rec", "ce")])
def test_ray_train_trains_and_reloads_each_architecture(ray_session, tmp_path, arch, loss):
    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import prepare
    from saerec.eval.evaluate import evaluate_run
    from saerec.model.checkpoint import load_model
    from saerec.rundir import RunDir
    from saerec.train.ray_train import train_recommender

    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=300", "data.synthetic_items=60", "data.synthetic_genres=4",
        f"model.arch={arch}", "model.n_layers=1", "model.d_model=16", "model.max_len=20",
        f"train.loss={loss}", "train.epochs=2", "train.batch_tokens=2048", "train.lr=0.005"])
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    stats = train_recommender(run, cfg, prep)
    model, meta = load_model(run.recommender)
    assert type(model).__name__.lower() == arch and meta["model"]["arch"] == arch and stats["epochs_run"] == 2
    m = evaluate_run(run)
    assert m["arch"] == arch and 0 < m["ndcg@10"] <= 1
