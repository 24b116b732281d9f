"""Splicing an SAE into GPTRec through the model's one intervention mechanism.

``reconstruction`` (the paper): the block output h is replaced by dec(enc(h)) (de-normalised).
``delta`` (default for steering): h + dec(f_edited) - dec(f); with no edit the delta is exactly
zero, so the original model is reproduced bit for bit (the SAE error term is kept).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..model.interface import Intervention, Where
from .base import SparseAutoencoder

Edit = Callable[[torch.Tensor, Where], torch.Tensor]   # (codes (N, m), where the vectors sit) -> codes


def splice(sae: SparseAutoencoder, mode: str = "reconstruction", edit: Edit | None = None,
           positions: str | torch.Tensor = "all") -> Intervention:
    if mode not in ("reconstruction", "delta"):
        raise ValueError(f"splice mode must be 'reconstruction' or 'delta', got {mode!r}")
    norm = sae.normalizer

    def fn(h: torch.Tensor, where: Where) -> torch.Tensor:
        f = sae.encode(norm(h))
        f_new = edit(f.clone(), where) if edit is not None else f
        if mode == "reconstruction":
            return norm.inverse(sae.decode(f_new))
        if edit is None:
            return h
        # the bias cancels; scale back by the normaliser's std
        return h + (f_new - f) @ sae.W_dec * norm.std.to(h)

    return Intervention(fn, positions)
