"""Hidden states of one named block at every non-padding position (plain torch)."""

from __future__ import annotations

import numpy as np
import torch

from ..model.gptrec import GPTRec
from ..train.batching import pad_inputs


@torch.no_grad()
def block_activations(model: GPTRec, users: np.ndarray, seqs: list[np.ndarray], layer: str = "block.0",
                      max_len: int | None = None) -> dict[str, np.ndarray]:
    """Rows for every real position of every sequence (each truncated to its most recent ``max_len``).

    Returns ``user_id``, ``position`` (0-based within the model input), ``item`` (dense index of the
    item *at* that position: the paper labels a position with the attributes of its input item),
    ``activation`` (float32, (N, d)).
    """
    max_len = max_len or model.cfg.max_len
    seqs = [s[-max_len:] for s in seqs]
    items, lengths = pad_inputs(seqs)
    out = model(items, lengths, capture=[layer])
    h = out.captured[layer]
    mask = torch.arange(items.shape[1])[None, :] < lengths[:, None]
    rows, pos = mask.nonzero(as_tuple=True)
    return {
        "user_id": np.asarray(users)[rows.numpy()].astype(np.int64),
        "position": pos.numpy().astype(np.int32),
        "item": items[rows, pos].numpy().astype(np.int64),
        "activation": h[mask].float().numpy(),
    }
