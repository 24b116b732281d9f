"""The SAE stage: RUN/activations/sae -> RUN/sae/ (Ray Train fits the SAE), then its metrics on the
test users' activations and, spliced into the recommender, on their next-item ranking.

Writes ``RUN/sae/sae.safetensors`` + ``cfg.json`` (architecture, normaliser, per-feature
statistics), ``metrics.json`` and ``history.json``.
"""

from __future__ import annotations

import logging
import time

from ..activations.stage import extract_stage
from ..config import RunConfig
from ..contract import Stage
from ..model.checkpoint import load_model, test_pairs
from ..rundir import A, RunDir
from .base import save_sae

log = logging.getLogger("saerec.sae")


def sae_stage(run: RunDir, cfg: RunConfig) -> dict:
    from .evaluate import downstream_metrics, reconstruction_metrics
    from .ray_train import train_sae

    meta = run.read_json(A.ACT_META)
    if meta["layer"] != cfg.activations.layer:
        log.info("activations were taken at %s, config asks for %s: re-extracting", meta["layer"], cfg.activations.layer)
        extract_stage(run, cfg)
    t = time.time()
    res = train_sae(run, cfg.sae, cfg.sae_train.num_workers, max_failures=cfg.sae_train.max_failures,
                    cache_shard=cfg.sae_train.cache_shard, precision=cfg.sae_train.precision)
    train_seconds = time.time() - t
    sae = res["sae"]
    recon, feats = reconstruction_metrics(sae, run.path(A.ACT_TEST))
    model, _ = load_model(run.recommender)
    # the test users' sequences only, not the whole log: this stage's memory must not grow with it
    test = test_pairs(run, model.max_len)
    inputs, targets = test.inputs, test.targets
    down = downstream_metrics(model, sae, cfg.activations.layer, inputs, targets)
    save_sae(run.path(A.SAE), sae, {"layer": cfg.activations.layer, "feature_stats": feats})
    metrics = {
        **recon,
        "ndcg@10_original": down["original"]["ndcg@10"],
        "ndcg@10_reconstructed": down["reconstructed"]["ndcg@10"],
        "ndcg@10_error_term": down["error_term"]["ndcg@10"],
        "error_term_identical_to_original": down["error_term_identical_to_original"],
        "downstream": down,
        "sae": {"kind": sae.cfg.kind, "n_latents": sae.cfg.n_latents, "l1": sae.cfg.l1, "k": sae.cfg.k,
                "normalization": sae.cfg.normalization, "recon": sae.cfg.recon},
        "layer": cfg.activations.layer,
        "train_activations": res["activations"],
        "train_activations_per_second": res["train_activations_per_second"],
        "train_seconds": train_seconds,
    }
    run.write_json(A.SAE_METRICS, metrics)
    run.write_json(A.SAE_HISTORY, res["history"])
    return metrics


STAGE = Stage("sae", ("sae", "sae_train"), (A.ACTIVATIONS,), (A.SAE_WEIGHTS, A.SAE_METRICS), sae_stage)
