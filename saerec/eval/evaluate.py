"""Test-set evaluation of a run's recommender, next to a popularity baseline."""

from __future__ import annotations

import numpy as np

from ..data.prepare import Prepared
from ..model.checkpoint import load_model
from ..rundir import RunDir
from .metrics import ranking_metrics
from .ranking import popularity_topk, recommend


def evaluate_run(run: RunDir, prepared: Prepared, k: int = 10, batch_size: int = 256) -> dict:
    model, meta = load_model(run.recommender)
    if model.n_items != prepared.index.size:
        from ..errors import RunError
        raise RunError(f"{run.recommender}: model has {model.n_items} items but RUN/data has "
                       f"{prepared.index.size}; the data changed since training: retrain")
    _, inputs, targets = prepared.eval_set("test", model.max_len)
    topk = recommend(model, inputs, k=k, batch_size=batch_size)
    test = ranking_metrics(topk, targets, model.n_items, k)
    rec_items = prepared.sequences("rec").items
    counts = np.bincount(rec_items, minlength=prepared.index.size + 1)[1:].astype(np.float64)
    pop = ranking_metrics(popularity_topk(counts, inputs, k), targets, model.n_items, k)
    s = prepared.meta
    return {
        **{k_: v for k_, v in test.items() if k_ != "users"},
        "test_users": test["users"],
        "popularity": {k_: v for k_, v in pop.items() if k_ != "users"},
        "dataset": s.get("dataset"),
        "split": {p: {"users": s.get(f"{p}_users"), "interactions": s.get(f"{p}_interactions"),
                      "items": s.get(f"{p}_items")} for p in ("rec", "sae", "test")},
        "cut_time": s.get("cut_time"),
        "n_items": model.n_items,
        "arch": meta["model"].get("arch", "gptrec"),
    }
