"""Hidden states of one named block at every real position of every user (plain torch)."""

from __future__ import annotations

import numpy as np
import torch

from ..model.interface import SequentialRecommender
from ..train.batching import pad_inputs


def windows(seq: np.ndarray, max_len: int) -> list[tuple[int, np.ndarray]]:
    """(start, window) pairs covering ``seq`` with model-length windows aligned to its end, as training does."""
    out, end = [], len(seq)
    while end > 0:
        start = max(0, end - max_len)
        out.append((start, seq[start:end]))
        end = start
    return out[::-1]


@torch.no_grad()
def block_activations(model: SequentialRecommender, users: np.ndarray, seqs: list[np.ndarray], layer: str = "block.0",
                      max_len: int | None = None) -> dict[str, np.ndarray]:
    """Rows for every position of every sequence (longer ones in ``max_len`` windows).

    Returns ``user_id``, ``position`` (index in the user's whole history), ``item`` (dense index of
    the item *at* that position: the paper labels a position with its input item's attributes) and
    ``activation`` (float32, (N, d)).
    """
    max_len = max_len or model.max_len
    owners, starts, chunks = [], [], []
    for u, s in zip(np.asarray(users), seqs):
        for start, w in windows(np.asarray(s), max_len):
            owners.append(u)
            starts.append(start)
            chunks.append(w)
    items, lengths = pad_inputs(chunks)
    device = next(iter(model.parameters()), torch.zeros(0)).device     # the model's device (a GPU in gpu_check)
    h = model(items.to(device), lengths.to(device), capture=[layer]).captured[layer].cpu()
    mask = torch.arange(items.shape[1])[None, :] < lengths[:, None]
    rows, pos = mask.nonzero(as_tuple=True)
    r = rows.numpy()
    return {
        "user_id": np.asarray(owners, dtype=np.int64)[r],
        "position": (np.asarray(starts, dtype=np.int64)[r] + pos.numpy()).astype(np.int32),
        "item": items[rows, pos].numpy().astype(np.int64),
        "activation": h[mask].float().numpy(),
    }
