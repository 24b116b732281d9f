"""The train stage: RUN/data -> RUN/recommender/ (Ray Train fits the recommender, then it is evaluated).

Also home of ``record_metrics``, which ``saerec import-model`` and ``saerec evaluate`` share: every
recommender in a run, trained here or imported, gets the same ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import replace

from ..config import RunConfig
from ..contract import Stage
from ..rundir import A, RunDir


def record_metrics(run: RunDir, cfg: RunConfig, extra: dict) -> dict:
    """Evaluate RUN's recommender on the test users (and popularity), add ``extra`` (training stats,
    or what import-model checked) and write ``recommender/metrics.json``; returns the metrics."""
    from ..eval.evaluate import evaluate_run

    metrics = {**evaluate_run(run, batch_size=cfg.train.eval_batch_size), **extra}
    run.write_json(A.REC_METRICS, metrics)
    return metrics


def train_and_evaluate(run: RunDir, cfg: RunConfig, prep=None, resume: bool = False,
                       t_start: float | None = None) -> dict:
    """Ray Train fits the recommender (``resume`` continues an interrupted training from its last
    checkpoint), then it is evaluated (``record_metrics``). ``prep``: see ``train_recommender``'s
    ``data`` (None: read from ``RUN/data`` in bounded batches, never the whole log)."""
    from .ray_train import train_recommender

    return record_metrics(run, cfg, train_recommender(run, cfg, prep, resume=resume, t_start=t_start))


def run_train(run: RunDir, cfg: RunConfig, resume: bool = False) -> dict:
    return train_and_evaluate(run, cfg, resume=resume)


STAGE = Stage("train", ("model", "train"), (A.SEQUENCES, A.ITEMS, A.SPLIT),
              (A.WEIGHTS, A.REC_METRICS), run_train)


def resuming() -> Stage:
    """The train stage continuing an interrupted training (``saerec run --resume``)."""
    return replace(STAGE, run=lambda run, cfg: run_train(run, cfg, resume=True))
