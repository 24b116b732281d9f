"""GPTRec test quality over several seeds with `saerec train` defaults, next to popularity.

Runs ``saerec train`` once per seed (each its own process and local Ray runtime) and writes the
per-seed metrics, mean and spread (min/max, std) to JSON.

    python benchmarks/gptrec_quality.py --data-dir ../shared/data/ml-1m-users-1-2999 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEYS = ("ndcg@10", "hit_rate@10", "mrr@10", "coverage@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("SAEREC_DATA_DIR", "../shared/data"),
                                                       "ml-1m-users-1-2999"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", default="runs/quality")
    ap.add_argument("--out", default="benchmarks/results/gptrec_quality.json")
    ap.add_argument("--resume", action="store_true",
                    help="read a seed's metrics from RUNS/seedN when it has them instead of training again "
                         "(training is deterministic per seed: rerun only after a code change)")
    ap.add_argument("extra", nargs="*", help="extra `saerec train` flags after --, e.g. -- --set train.lr=0.002")
    args = ap.parse_args()
    per_seed = {}
    for seed in args.seeds:
        run = Path(args.runs) / f"seed{seed}"
        done = run / "recommender" / "metrics.json"
        if args.resume and done.exists():
            per_seed[seed] = json.loads(done.read_text()) | {"reused": True}
            print(f"seed {seed}: metrics read from {done}", flush=True)
            continue
        t = time.time()
        cmd = [sys.executable, "-m", "saerec", "train", "--run", str(run), "--data-dir", args.data_dir,
               "--seed", str(seed), *args.extra]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        m = json.loads((run / "recommender" / "metrics.json").read_text())
        m["wall_seconds"] = time.time() - t
        per_seed[seed] = m
    def agg(values):
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values)}
    summary = {k: agg([m[k] for m in per_seed.values()]) for k in KEYS}
    summary["popularity"] = {k: agg([m["popularity"][k] for m in per_seed.values()]) for k in KEYS}
    for k in ("seconds_to_best_checkpoint", "train_tokens_per_second", "best_epoch", "epochs_run", "wall_seconds"):
        if all(k in m for m in per_seed.values()):
            summary[k] = agg([float(m[k]) for m in per_seed.values()])
    out = {"benchmark": "gptrec_quality", "data_dir": args.data_dir, "seeds": args.seeds,
           "summary": summary, "per_seed": per_seed}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{'metric':<28}{'GPTRec mean':>12}{'min':>8}{'max':>8}{'popularity':>12}")
    for k in KEYS:
        s, p = summary[k], summary["popularity"][k]
        print(f"{k:<28}{s['mean']:>12.4f}{s['min']:>8.4f}{s['max']:>8.4f}{p['mean']:>12.4f}")
    for k in ("seconds_to_best_checkpoint", "train_tokens_per_second", "best_epoch"):
        s = summary[k]
        print(f"{k:<28}{s['mean']:>12,.1f}{s['min']:>8,.0f}{s['max']:>8,.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
