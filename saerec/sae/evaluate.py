"""SAE quality (paper Table 1): reconstruction metrics streamed over test activations, and
recommendation metrics with the block output replaced by the reconstruction.

Rows: ``original`` (no splice), ``reconstructed`` (the paper's splice), ``error_term`` (delta splice
with no edit: must equal the original exactly, a built-in sanity check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..activations.store import iter_batches, to_tensor
from ..eval.metrics import ranking_metrics
from ..eval.ranking import recommend
from ..model.interface import SequentialRecommender
from .base import SparseAutoencoder
from .splice import splice
from .trainer import ReconStats


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, folder: Path, batch_rows: int = 65_536) -> tuple[dict, dict]:
    """Stream ``folder/*.parquet`` activations: RMSE, explained variance, L0, dead fraction + feature stats."""
    sae.eval()
    stats = ReconStats(sae.cfg.n_latents)
    for rb in iter_batches(folder, batch_rows=batch_rows):
        x = sae.normalizer(to_tensor(rb.column(0)))
        codes = sae.encode(x)
        stats.update(x, sae.decode(codes), codes)
    return stats.result(), stats.feature_stats()


def downstream_metrics(model: SequentialRecommender, sae: SparseAutoencoder, layer: str, inputs: list[np.ndarray],
                       targets: np.ndarray, k: int = 10) -> dict:
    rows = {}
    base = recommend(model, inputs, k=k)
    rows["original"] = ranking_metrics(base, targets, model.n_items, k)
    rec = recommend(model, inputs, k=k, interventions={layer: splice(sae, "reconstruction")})
    rows["reconstructed"] = ranking_metrics(rec, targets, model.n_items, k)
    err = recommend(model, inputs, k=k, interventions={layer: splice(sae, "delta")})
    rows["error_term"] = ranking_metrics(err, targets, model.n_items, k)
    rows["error_term_identical_to_original"] = bool(np.array_equal(err, base))
    return rows
