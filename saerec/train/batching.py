"""Training windows and length-bucketed batches: where the speed comes from.

Sequences vary from 2 to 200+ items; padding every batch to 200 wastes most of the compute.
Sorting windows by length and filling each batch up to a *token budget* keeps padding to a few
percent while batch order stays random.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.sequences import Sequences


def make_windows(seqs: Sequences, max_len: int, mode: str = "last") -> list[np.ndarray]:
    """Training windows of up to ``max_len + 1`` items (inputs = w[:-1], targets = w[1:]).

    ``last``: each user's most recent window (the authors' choice). ``all``: the whole history cut
    into consecutive windows that overlap by one item, so every transition is trained once.
    """
    if mode not in ("last", "all"):
        raise ValueError(f"windows must be 'last' or 'all', got {mode!r}")
    out = []
    for i in range(len(seqs)):
        s = seqs.get(i)
        if len(s) < 2:
            continue
        if mode == "last":
            out.append(s[-(max_len + 1):])
            continue
        end = len(s)
        while end > 1:
            start = max(0, end - max_len - 1)
            out.append(s[start:end])
            end = start + 1
    return out


def bucket_batches(lengths: np.ndarray, batch_tokens: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Group indices so each batch's (rows x longest) stays within ``batch_tokens``; shuffled order."""
    order = np.lexsort((rng.random(len(lengths)), -np.asarray(lengths)))   # longest first, random ties
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, batch_tokens // longest)
        batches.append(order[start: start + rows])
        start += rows
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def shard_batches(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Every rank gets the same number of batches (DDP steps in lockstep)."""
    n = (len(batches) // world) * world
    return batches[rank:n:world]


def collate(windows, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded inputs, targets (0 = ignore) and input lengths for windows[idx]. ``windows``: a
    list of arrays, or a :class:`~saerec.train.windows.WindowFile` (each window is read once)."""
    rows = [windows[i] for i in idx]
    lens = np.array([len(w) - 1 for w in rows], dtype=np.int64)
    T = int(lens.max())
    inp = np.zeros((len(idx), T), dtype=np.int64)
    tgt = np.zeros((len(idx), T), dtype=np.int64)
    for r, w in enumerate(rows):
        inp[r, : len(w) - 1] = w[:-1]
        tgt[r, : len(w) - 1] = w[1:]
    return torch.from_numpy(inp), torch.from_numpy(tgt), torch.from_numpy(lens)


def pad_inputs(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of item-index arrays (each non-empty) for inference."""
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.zeros((len(seqs), int(lens.max())), dtype=np.int64)
    for r, s in enumerate(seqs):
        out[r, : len(s)] = s
    return torch.from_numpy(out), torch.from_numpy(lens)
