"""One point of the SAE grid, trained and measured in one process (no Ray here).

Every trial reads the run's cached activation shards (``RUN/activations/sae`` to train,
``RUN/activations/test`` to measure): nothing is re-extracted. Per trial: reconstruction metrics
(paper Table 1), NDCG@10 with the reconstruction spliced in, and the interpretability score (mean
over genres of the best feature's correlation, paper Section 7).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..activations.store import iter_batches, to_tensor
from ..data.attributes import genre_columns
from ..interpret.stats import StreamedAttributeStats
from ..sae.base import SAEConfig, SparseAutoencoder, build_sae
from ..sae.trainer import make_optimizer, train_steps


@dataclass
class TrialResult:
    metrics: dict
    sae: SparseAutoencoder


def local_minibatches(folder: Path, cfg: SAEConfig, epoch: int, norm, block_rows: int = 16_384):
    """Minibatches from the Parquet shards: blocks of rows, shuffled inside, cut into batch_size."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    for rb in iter_batches(folder, ("activation",), block_rows):
        x = norm(to_tensor(rb.column(0)))
        x = x[torch.randperm(len(x), generator=g)]
        for lo in range(0, len(x) - cfg.batch_size + 1, cfg.batch_size):
            yield x[lo: lo + cfg.batch_size]


def interpretability(sae: SparseAutoencoder, folder: Path, items: pd.DataFrame, auc_sample: int = 2000) -> float:
    """Mean over genres of max over features of corr(feature, genre of the item at that position)."""
    genres = genre_columns(items)
    if not genres:
        return float("nan")
    lookup = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    Y_all = torch.from_numpy(items[genres].to_numpy(dtype=bool).copy())
    stats = StreamedAttributeStats(sae.cfg.n_latents, len(genres), auc_sample)
    with torch.no_grad():
        for rb in iter_batches(folder, ("item_id", "activation"), 16_384):
            codes = sae.encode(sae.normalizer(to_tensor(rb.column("activation"))))
            idx = torch.from_numpy(lookup[rb.column("item_id").to_numpy()].to_numpy().copy())
            stats.update(codes, Y_all[idx])
    return float(stats.result().correlation.max(0).mean())


def run_trial(run_root: Path, base: SAEConfig, params: dict, norm, init_sample: np.ndarray, d_in: int,
              downstream: Callable[[SparseAutoencoder], float] | None, items: pd.DataFrame,
              report: Callable[[dict], None] | None = None) -> TrialResult:
    """Train ``base`` with ``params`` (l1, n_latents, kind, seed, epochs) and measure it."""
    from ..sae.evaluate import reconstruction_metrics

    cfg = replace(base, **{k: v for k, v in params.items() if k in SAEConfig.__dataclass_fields__})
    torch.manual_seed(cfg.seed)
    sae = build_sae(d_in, cfg)
    sae.normalizer = norm
    sae.init_from_sample(torch.tensor(np.asarray(init_sample), dtype=torch.float32))   # copy: read-only in the object store
    opt = make_optimizer(sae)
    acts = Path(run_root) / "activations"
    for epoch in range(cfg.epochs):
        parts = train_steps(sae, opt, local_minibatches(acts / "sae", cfg, epoch, norm))
        if report is not None and epoch + 1 < cfg.epochs:
            report({"epoch": epoch + 1, "train_loss": parts["loss"]})
    sae.eval()
    recon, _ = reconstruction_metrics(sae, acts / "test")
    metrics = {**recon, "epoch": cfg.epochs, "train_loss": parts["loss"],
               "interpretability": interpretability(sae, acts / "test", items)}
    if downstream is not None:
        metrics["ndcg@10_reconstructed"] = downstream(sae)
    return TrialResult(metrics, sae)
