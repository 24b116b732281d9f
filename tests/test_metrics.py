import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from saerec.eval.metrics import ranking_metrics, target_ranks
from saerec.eval.ranking import popularity_topk
from saerec.model.interface import mask_seen
import torch


def test_hand_computed_values():
    topk = np.array([[5, 3, 9], [1, 2, 4], [7, 8, 6], [3, 5, 1]])
    targets = np.array([3, 4, 10, 3])
    m = ranking_metrics(topk, targets, n_catalog=20, k=3)
    # ranks: 1, 2, miss, 0
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4) + 0 + 1) / 4)
    assert m["hit_rate@3"] == pytest.approx(3 / 4)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1 / 3 + 0 + 1) / 4)
    assert m["coverage@3"] == pytest.approx(len({5, 3, 9, 1, 2, 4, 7, 8, 6}) / 20)
    assert list(target_ranks(topk, targets)) == [1, 2, -1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 50, 40, 10
    scores = rng.normal(size=(n_users, n_items))          # continuous: no ties
    targets = rng.integers(0, n_items, size=n_users)
    topk = np.argsort(-scores, axis=1)[:, :k]
    ours = ranking_metrics(topk, targets, n_items, k)["ndcg@10"]
    y_true = np.zeros_like(scores)
    y_true[np.arange(n_users), targets] = 1
    assert ours == pytest.approx(ndcg_score(y_true, scores, k=k))


def test_mask_seen_and_popularity():
    scores = torch.zeros(2, 5)
    inputs = torch.tensor([[1, 3, 0], [5, 0, 0]])          # dense indices, 0 = padding
    masked = mask_seen(scores, inputs)
    assert torch.isinf(masked[0, [0, 2]]).all() and torch.isfinite(masked[0, [1, 3, 4]]).all()
    assert torch.isinf(masked[1, 4]) and torch.isfinite(masked[1, :4]).all()
    counts = np.array([10.0, 50.0, 30.0, 5.0, 1.0])          # items 1..5
    top = popularity_topk(counts, [np.array([2]), np.array([1, 3])], k=2)
    assert top.tolist() == [[3, 1], [2, 4]]


def test_inter_list_diversity_equals_pairwise_cosine_distance():
    from saerec.eval.metrics import attribute_shares, inter_list_diversity

    rng = np.random.default_rng(0)
    topk = np.stack([rng.choice(np.arange(1, 40), 10, replace=False) for _ in range(25)])
    onehot = np.zeros((25, 40))
    np.put_along_axis(onehot, topk, 1.0, axis=1)
    unit = onehot / np.linalg.norm(onehot, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairwise = 1 - cos[np.triu_indices(25, 1)].mean()
    assert inter_list_diversity(topk) == pytest.approx(pairwise, abs=1e-12)
    assert inter_list_diversity(np.tile(topk[:1], (5, 1))) == pytest.approx(0.0)
    attrs = np.zeros((40, 2), dtype=bool)
    attrs[1:20, 0] = True
    assert attribute_shares(topk, attrs)[0] == pytest.approx((topk < 20).mean())


def test_length_batches_cover_every_row_once_within_the_token_budget():
    from saerec.eval.ranking import length_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 201, 300)
    for batch_size, max_tokens in ((256, None), (32, 2048), (32, 150)):
        batches = length_batches(lengths, batch_size, max_tokens)
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(300))
        assert all(len(b) <= batch_size for b in batches)
        if max_tokens is None:
            assert [len(b) for b in batches] == [256, 44]
        else:                                   # within budget, except a lone row longer than it
            assert all(len(b) * lengths[b].max() <= max_tokens or len(b) == 1 for b in batches)
            assert all(lengths[b].max() <= lengths[n].min() for b, n in zip(batches, batches[1:]))


def test_beyond_accuracy_formulas_on_hand_made_cases():
    """Doctests (Gini at 0, (n-1)/n and a mixed case; long-tail share; novelty; the popularity head),
    then the sweep's per-list metrics: Gini over one list per user, long tail and novelty over all."""
    import doctest

    from saerec.eval import metrics
    from saerec.steer.sweep import Points, list_metrics

    res = doctest.testmod(metrics, raise_on_error=False)
    assert res.attempted >= 7 and res.failed == 0
    head, p = metrics.popularity_arrays(np.array([100, 10, 10, 10, 10]))      # item 1 is the head
    topk = np.array([[1, 2], [1, 3], [4, 5]])                                # users 0, 0, 1
    pts = Points([np.array([1])] * 3, np.array([2, 9, 9]), np.array([0, 0, 1]))
    m = list_metrics(topk, pts, 5, np.zeros((6, 0), dtype=bool), [], 2, (head, p))
    assert m["long_tail@2"] == pytest.approx(4 / 6)
    assert m["novelty@2"] == pytest.approx(-(2 * np.log2(100 / 140) + 4 * np.log2(10 / 140)) / 6)
    # last lists [1, 3] and [4, 5]: counts (1, 0, 1, 1, 1) over 5 items
    assert m["gini@2"] == pytest.approx(metrics.gini_index(np.array([[1, 3], [4, 5]]), 5))
    assert m["gini@2"] == pytest.approx((-4 * 0 + (-2 + 0 + 2 + 4) * 1) / (5 * 4))
