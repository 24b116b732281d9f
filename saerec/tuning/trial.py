"""One point of the SAE grid, trained and measured in one process (no Ray here).

Every trial reads the run's cached activation shards (``RUN/activations/sae`` to train,
``RUN/activations/test`` to measure): nothing is re-extracted. Per trial: reconstruction metrics
(paper Table 1), NDCG@10 with the reconstruction spliced in, and the interpretability score (mean
over genres of the best feature's correlation, paper Section 7) and, unless ``sae_eval_rows`` is 0,
sae-eval's k=1 sparse-probing AUC (SAE and neurons) and mean absorption on a bounded sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..activations.store import count_rows, iter_batches, to_tensor
from ..errors import RunError
from ..data.attributes import genre_columns
from ..interpret.stats import StreamedAttributeStats
from ..sae.base import SAEConfig, SparseAutoencoder, build_sae, planned_epochs
from ..sae.trainer import make_optimizer, train_steps

log = logging.getLogger("saerec.tune")


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


def suite_columns(sae: SparseAutoencoder, folder: Path, items: pd.DataFrame, rows: int) -> dict[str, float]:
    """sae-eval's headline numbers on the first ``rows`` test positions: mean held-out AUC of the
    k=1 sparse probe on SAE latents and on raw neurons (over every attribute), and mean absorption.
    The same passes as ``saerec sae-eval`` (saerec.saeeval.stage.run_passes), bounded for a grid."""
    from ..data.attributes import attribute_columns
    from ..saeeval.stage import run_passes

    attrs = attribute_columns(items)
    if not attrs:
        return {}
    try:
        _, _, probing, _, absorb, _ = run_passes(folder, sae, items, attrs, [1], sample_rows=rows, batch_rows=8192,
                                                 printer=lambda _: None, max_rows=rows)
    except RunError as e:              # the first rows hold one fold of users only: nothing held out
        log.warning("sae-eval columns skipped: %s", e)
        return {}
    k1 = probing[probing["k"] == 1].groupby("source")["auc"].mean()
    return {"k1_auc_sae": float(k1.get("sae", np.nan)), "k1_auc_neurons": float(k1.get("neurons", np.nan)),
            "mean_absorption": float(absorb["absorption_fraction"].mean())}


def run_trial(run_root: Path, base: SAEConfig, params: dict, norm, init_sample: np.ndarray, d_in: int,
              downstream: Callable[[SparseAutoencoder], float] | None, items: pd.DataFrame,
              report: Callable[[dict], None] | None = None, suite_rows: int = 0) -> TrialResult:
    """Train ``base`` with ``params`` (l1, n_latents, kind, seed, epochs) and measure it."""
    from ..sae.evaluate import reconstruction_metrics

    cfg = replace(base, **{k: v for k, v in params.items() if k in SAEConfig.__dataclass_fields__})
    torch.manual_seed(cfg.seed)
    sae = build_sae(d_in, cfg)
    sae.normalizer = norm
    sae.init_from_sample(torch.tensor(np.asarray(init_sample), dtype=torch.float32))   # copy: read-only in the object store
    opt = make_optimizer(sae)
    acts = Path(run_root) / "activations"
    cfg = replace(cfg, epochs=planned_epochs(cfg, count_rows(acts / "sae")))    # the step budget, as the SAE stage
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
    if suite_rows:
        metrics.update(suite_columns(sae, acts / "test", items, suite_rows))
    return TrialResult(metrics, sae)
