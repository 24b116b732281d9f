import numpy as np
import pytest
import torch
from scipy.stats import pointbiserialr, rankdata
from sklearn.metrics import roc_auc_score

from saerec.interpret.stats import StreamedAttributeStats, average_ranks


def data(seed=0, n=2000, m=6, A=3):
    rng = np.random.default_rng(seed)
    y = rng.random((n, A)) < [0.1, 0.3, 0.5][:A]
    f = np.maximum(rng.normal(size=(n, m)) + y[:, [0] * m] * 0.8, 0)   # sparse-ish, ties at 0
    f[:, 0] = np.round(f[:, 0], 1)                                        # more ties
    return f.astype(np.float32), y


@pytest.mark.parametrize("seed", range(3))
def test_streamed_stats_match_scipy_and_sklearn(seed):
    f, y = data(seed)
    st = StreamedAttributeStats(f.shape[1], y.shape[1], auc_sample=10_000)
    for lo in range(0, len(f), 333):
        st.update(torch.from_numpy(f[lo:lo + 333]), torch.from_numpy(y[lo:lo + 333]))
    r = st.result()
    for j in range(f.shape[1]):
        for a in range(y.shape[1]):
            assert r.correlation[j, a] == pytest.approx(pointbiserialr(y[:, a], f[:, j].astype(np.float64))[0], abs=1e-9)
            assert r.auc[j, a] == pytest.approx(roc_auc_score(y[:, a], f[:, j]), abs=1e-9)
            active = f[:, j] > 0
            assert r.sensitivity[j, a] == pytest.approx(active[y[:, a]].mean())
            assert r.precision[j, a] == pytest.approx(y[active, a].mean())
    assert r.n == len(f) and r.auc_rows == len(f)


def test_reservoir_caps_auc_rows_but_correlation_stays_exact():
    f, y = data(1, n=5000)
    st = StreamedAttributeStats(f.shape[1], y.shape[1], auc_sample=1000)
    for lo in range(0, len(f), 700):
        st.update(torch.from_numpy(f[lo:lo + 700]), torch.from_numpy(y[lo:lo + 700]))
    r = st.result()
    assert r.auc_rows == 1000
    assert r.correlation[1, 0] == pytest.approx(pointbiserialr(y[:, 0], f[:, 1].astype(np.float64))[0], abs=1e-9)
    assert abs(r.auc[1, 0] - roc_auc_score(y[:, 0], f[:, 1])) < 0.05


def test_average_ranks_match_scipy():
    x = torch.tensor(np.round(np.random.default_rng(0).normal(size=(50, 4)), 1))
    expected = np.stack([rankdata(x[:, j].numpy()) for j in range(4)], 1)
    assert np.allclose(average_ranks(x).numpy(), expected)


def test_top_activations_streamed_equal_direct_topk():
    from saerec.interpret.stage import TopActivations

    torch.manual_seed(0)
    f = torch.rand(1000, 7)
    meta = torch.stack([torch.arange(1000), torch.arange(1000) * 2, torch.arange(1000) * 3], 1)
    top = TopActivations(7, k=5)
    for lo in range(0, 1000, 130):
        top.update(f[lo:lo + 130], meta[lo:lo + 130])
    ref = f.topk(5, dim=0)
    assert torch.equal(top.vals, ref.values)
    assert torch.equal(top.meta[:, :, 0], ref.indices) and torch.equal(top.meta[:, :, 2], ref.indices * 3)


def test_auc_is_the_same_whatever_the_column_chunks():
    """interpret ranks the AUC sample a few columns at a time (bounded memory); the chunking must not
    change a value: one column per chunk, a ragged last chunk and all columns at once agree."""
    from saerec.interpret.stats import auc_matrix

    f, y = data(2, n=600)
    ft, yt = torch.from_numpy(f), torch.from_numpy(y)
    one = auc_matrix(ft, yt, chunk_bytes=8 * len(f))              # 1 column per chunk
    ragged = auc_matrix(ft, yt, chunk_bytes=8 * len(f) * 4)        # 4 columns, then the other 2
    whole = auc_matrix(ft, yt, chunk_bytes=1 << 40)
    assert one.shape == (f.shape[1], y.shape[1])
    assert np.array_equal(one, whole, equal_nan=True) and np.array_equal(ragged, whole, equal_nan=True)
    assert abs(whole[1, 0] - roc_auc_score(y[:, 0], f[:, 1])) < 1e-12
