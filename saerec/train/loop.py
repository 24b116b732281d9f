"""One training epoch of GPTRec in plain torch (Ray Train calls this on each worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrainConfig
from ..progress import Progress
from .batching import collate
from .loss import full_ce, sampled_ce


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


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, windows: list[np.ndarray],
                batches: list[np.ndarray], cfg: TrainConfig, device: torch.device | str = "cpu",
                log_q: torch.Tensor | None = None, progress: Progress | None = None) -> EpochStats:
    model.train()
    core = unwrap(model)
    total_loss, tokens, padded = 0.0, 0, 0
    t0 = time.perf_counter()
    for idx in batches:
        inp, tgt, lengths = collate(windows, idx)
        inp, tgt, lengths = inp.to(device), tgt.to(device), lengths.to(device)
        out = model(inp, lengths)
        mask = tgt != 0
        h = out.hidden[mask]
        y = tgt[mask]
        W = core.item_weights()
        if cfg.loss == "ce":
            loss = full_ce(h, W, y, chunk=cfg.ce_chunk)
        else:
            loss = sampled_ce(h, W, y, cfg.num_negatives, log_q if cfg.negatives == "inbatch" else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = int(mask.sum())
        total_loss += float(loss.detach()) * n
        tokens += n
        padded += tgt.numel()
        if progress is not None:
            progress.update(n, extra=f"loss {total_loss / max(tokens, 1):.4f}")
    return EpochStats(total_loss / max(tokens, 1), tokens, padded, time.perf_counter() - t0)
