"""Test NDCG@10 of trained runs with a bootstrap 95% interval over the test users, beside the best
validation NDCG@10 the early stopping chose: is a run's validation/test gap larger than the test
set's own noise? Prints one JSON line per run.

    python benchmarks/ndcg_interval.py runs/gptrec-s0 runs/bert4rec-p20-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saerec.eval.metrics import row_ndcg
from saerec.eval.ranking import recommend
from saerec.model.checkpoint import load_model, test_pairs
from saerec.rundir import A, RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    for name in args.runs:
        run = RunDir(Path(name))
        model, _ = load_model(run.recommender)
        test = test_pairs(run, model.max_len)
        per_user = row_ndcg(recommend(model, test.inputs), test.targets)
        rng = np.random.default_rng(0)
        boots = [per_user[rng.integers(0, len(per_user), len(per_user))].mean() for _ in range(args.resamples)]
        m = run.read_json(A.REC_METRICS)
        print(json.dumps({"run": name, "test_users": len(per_user), "test_ndcg@10": float(per_user.mean()),
                          "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
                          "best_val_ndcg@10": m["best_val_ndcg@10"], "test_over_val": float(per_user.mean()) / m["best_val_ndcg@10"],
                          "best_epoch": m.get("best_epoch"), "epochs_run": m.get("epochs_run")}), flush=True)


if __name__ == "__main__":
    main()
