"""saerec.reservoir: the bounded uniform row sample that interpret and sae-eval keep of the test positions."""

import numpy as np
import pytest
import torch

from saerec.reservoir import Reservoir


def direct(n: int, cap: int, seed: int) -> np.ndarray:
    """The rows a sample must hold: those with the ``cap`` smallest of the stream's keys, in stream order."""
    return np.sort(np.argsort(np.random.default_rng(seed).random(n))[:cap])


@pytest.mark.parametrize("batch", [1, 7, 64, 1000, 5000])
def test_sample_is_the_smallest_keys_whatever_the_batches(batch):
    n, cap = 5000, 300
    res, held = Reservoir(cap, seed=3), []
    for lo in range(0, n, batch):
        rows = np.arange(lo, min(lo + batch, n))
        res.add(rows, torch.from_numpy(rows.astype(np.float32))[:, None].repeat(1, 2))
        held.append(res.rows)
    ids, t = res.result()
    assert np.array_equal(ids, direct(n, cap, 3))
    assert torch.equal(t[:, 1], torch.from_numpy(ids.astype(np.float32)))       # columns stay aligned
    assert max(held) <= cap                                                     # never more than cap rows
    assert all(len(c) == cap for c in res.cols)                                 # preallocated: no growth
    again = res.result()                             # interpret reads it twice (stats, then the plots)
    assert again[1] is t and np.array_equal(again[0], ids)                     # the same sample, not a copy


def test_few_rows_are_all_kept_and_nothing_gives_empty():
    res = Reservoir(100, seed=0)
    res.add(np.arange(10))
    res.add(np.arange(10, 30))
    assert res.result()[0].tolist() == list(range(30))
    assert Reservoir(5).result() == ()


def test_rows_past_the_threshold_are_not_held():
    """Past the first cut only rows that can still be in the final sample are copied: about
    cap * (1 + ln(rows / cap)) of 200,000 (about 860 here), not every row."""
    res = Reservoir(100, seed=0)
    for lo in range(0, 200_000, 1000):
        res.add(np.arange(lo, lo + 1000))
    assert res.rows == 100
    assert res.admitted < 2_000
    assert np.array_equal(res.result()[0], direct(200_000, 100, 0))
