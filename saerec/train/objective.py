"""What a training batch asks the model to predict, and the loss on it.

A batch is a window's inputs and its next items (``collate``: inputs = w[:-1], targets = w[1:]).

- ``causal`` (GPTRec, SASRec): every real position predicts the next item.
- ``cloze`` (BERT4Rec): the window's items w[1:] with a share ``mask_prob`` of their positions
  replaced by the mask token (at least one per row: the last, so next-item prediction is always
  trained), each masked position predicting the item it hides.

Then the loss over the (hidden, target) pairs: ``ce`` full softmax, ``sampled`` softmax with logQ
correction, or ``bce`` with one uniform negative per position (the original SASRec).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from .loss import full_ce, sampled_ce


PATIENCE = {"causal": 5, "cloze": 20}     # train.patience when unset, per objective (docs/models.md)


def patience_for(cfg: TrainConfig, objective: str) -> int:
    """Early-stopping patience: the configured one, else the objective's. A masked (cloze) model sees
    a fifth of its positions as targets per epoch and stays at popularity level for its first ~15
    epochs on ML-1M, so 5 epochs without improvement stopped BERT4Rec before it learnt anything.

    >>> patience_for(TrainConfig(), "causal"), patience_for(TrainConfig(), "cloze"), patience_for(TrainConfig(patience=3), "cloze")
    (5, 20, 3)
    """
    return cfg.patience or PATIENCE[objective]


def predictions(model, core, inp: torch.Tensor, tgt: torch.Tensor, lengths: torch.Tensor, objective: str,
                mask_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden (N, d), targets (N,) in 1..V) of one batch; ``model`` may be DDP-wrapped, ``core`` is not."""
    if objective == "causal":
        mask = tgt != 0
        return model(inp, lengths).hidden[mask], tgt[mask]
    real = tgt != 0
    masked = real & (torch.rand(tgt.shape, device=tgt.device) < mask_prob)
    masked[torch.arange(len(lengths), device=tgt.device), lengths - 1] = True
    seq = torch.where(masked, core.mask_token, tgt)
    return model(seq, lengths).hidden[masked], tgt[masked]


def loss_on(h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
            log_q: torch.Tensor | None = None) -> torch.Tensor:
    """The configured loss of hidden vectors ``h`` against item vectors ``W`` (V, d) and targets ``y``."""
    if cfg.loss == "ce":
        return full_ce(h, W, y, chunk=cfg.ce_chunk)
    if cfg.loss == "sampled":
        return sampled_ce(h, W, y, cfg.num_negatives, log_q if cfg.negatives == "inbatch" else None)
    neg = torch.randint(0, W.shape[0], (len(y),), device=h.device)
    pos_logit = (h * W[y - 1]).sum(-1)
    neg_logit = (h * W[neg]).sum(-1)
    return (F.softplus(-pos_logit) + F.softplus(neg_logit)).mean()
