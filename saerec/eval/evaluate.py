"""Test-set evaluation of a run's recommender, next to a popularity baseline.

Streamed: it reads the test users' sequences and the rec part's item counts from
``RUN/data/sequences.parquet`` (:func:`~saerec.data.prepare.read_sequences`,
:func:`~saerec.data.prepare.item_counts`), never the whole interaction log, so its memory grows with
the test set and the catalog, not with the log (issue 21: every stage streams at ML-20M size).
"""

from __future__ import annotations

import numpy as np

from ..data.prepare import item_counts, read_sequences
from ..data.sequences import eval_pairs
from ..model.checkpoint import load_model
from ..rundir import A, RunDir
from .metrics import ranking_metrics
from .ranking import popularity_topk, recommend


def ranking_report(model, inputs: list[np.ndarray], targets: np.ndarray, rec_counts: np.ndarray, k: int = 10,
                   batch_size: int = 256, device: str = "cpu") -> dict:
    """The model's and the popularity baseline's ranking metrics on (inputs, targets); ``rec_counts``:
    each item's count in the rec part, dense order (what popularity ranks by)."""
    test = ranking_metrics(recommend(model, inputs, k=k, batch_size=batch_size, device=device), targets, model.n_items, k)
    pop = ranking_metrics(popularity_topk(rec_counts.astype(np.float64), inputs, k), targets, model.n_items, k)
    return {**{k_: v for k_, v in test.items() if k_ != "users"}, "test_users": test["users"],
            "popularity": {k_: v for k_, v in pop.items() if k_ != "users"}}


def evaluate_run(run: RunDir, k: int = 10, batch_size: int = 256, device: str = "cpu") -> dict:
    model, meta = load_model(run.recommender, device=device)
    s = run.read_json(A.SPLIT)                             # first: a missing RUN/data is one clear RunError
    index, rec_counts = item_counts(run)
    if model.n_items != index.size:
        from ..errors import RunError
        raise RunError(f"{run.recommender}: model has {model.n_items} items but RUN/data has "
                       f"{index.size}; the data changed since training: retrain")
    inputs, targets = eval_pairs(read_sequences(run, "test", index), model.max_len)
    return {
        **ranking_report(model, inputs, targets, rec_counts, k, batch_size, device),
        "dataset": s.get("dataset"),
        "split": {p: {"users": s.get(f"{p}_users"), "interactions": s.get(f"{p}_interactions"),
                      "items": s.get(f"{p}_items")} for p in ("rec", "sae", "test")},
        "cut_time": s.get("cut_time"),
        "n_items": model.n_items,
        "arch": meta["model"].get("arch", "gptrec"),
    }
