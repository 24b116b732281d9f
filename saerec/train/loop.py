"""One training epoch of a recommender in plain torch (Ray Train calls this on each worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrainConfig
from ..precision import autocast, to_device
from ..progress import Progress
from .batching import collate
from .objective import loss_on, predictions


@dataclass
class EpochStats:
    loss: float
    tokens: int          # non-padding target positions trained on
    padded: int          # positions computed including padding
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, windows,
                batches: list[np.ndarray], cfg: TrainConfig, device: torch.device | str = "cpu",
                log_q: torch.Tensor | None = None, progress: Progress | None = None,
                objective: str = "causal", dtype: torch.dtype | None = None) -> EpochStats:
    """One pass over ``batches`` (indices into ``windows``: a list of arrays or a
    :class:`~saerec.train.windows.WindowFile`). ``dtype``: autocast dtype of the forward pass and
    loss (None: fp32).

    Nothing here waits for the device: the loss is summed on it and read once, at the end (a
    ``float(loss)`` per step would stall a GPU's queue every step); the causal objective's token
    count is known on the host from the batch's lengths. Progress lines show the rate only."""
    model.train()
    core = unwrap(model)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    tokens, padded = 0, 0
    t0 = time.perf_counter()
    for idx in batches:
        inp, tgt, lengths = collate(windows, idx)
        n_host = int(lengths.sum()) if objective == "causal" else None
        inp, tgt, lengths = to_device(inp, device), to_device(tgt, device), to_device(lengths, device)
        with autocast(dtype, device):
            h, y = predictions(model, core, inp, tgt, lengths, objective, cfg.mask_prob)
            loss = loss_on(h, core.item_weights(), y, cfg, log_q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = n_host if n_host is not None else len(y)
        total_loss += loss.detach().double() * n
        tokens += n
        padded += tgt.numel()
        if progress is not None:
            progress.update(n)
    return EpochStats(float(total_loss) / max(tokens, 1), tokens, padded, time.perf_counter() - t0)
