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


def delta_splice(h: torch.Tensor, code_change: torch.Tensor, directions: torch.Tensor, std: torch.Tensor,
                 push: torch.Tensor | None = None) -> torch.Tensor:
    """h + std · (Σ_j Δc_j · directions[j] + push): the one place the delta splice's arithmetic lives.

    ``code_change`` (N, J) is the change of J codes (SAE latents, or probe coordinates), ``directions``
    (J, d) their decoder rows in the normalised space, ``std`` the normaliser's scale back to the
    model's; ``push`` an extra change in that space (probe directions). The SAE's bias and its error
    term cancel: with no change, ``h`` comes back up to the addition of an exact zero."""
    change = code_change @ directions
    return h + (change if push is None else change + push) * std.to(h)


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
        return delta_splice(h, f_new - f, sae.W_dec, norm.std)

    return Intervention(fn, positions)
