"""GPTRec training throughput on Ray Train with 1 vs 2 data-parallel workers, side by side.

Both runs train ``--epochs`` epochs on the same prepared data (default: ML-1M users 1-2999, the
default model) through ``saerec.train.ray_train.train_recommender`` (DDP over gloo on CPU) and
report the tokens/s that training measured (validation excluded). On a 2-core machine 2 workers
share the same 2 cores, so expect about 1x: DDP adds an all-reduce per step and splits batches
that a single worker's 2 threads already parallelise. Writes JSON.

    python benchmarks/train_workers.py --data-dir ../shared/data/ml-1m-users-1-2999 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("SAEREC_DATA_DIR", "../shared/data"),
                                                       "ml-1m-users-1-2999"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="benchmarks/results/train_workers.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import prepare
    from saerec.raycluster import ensure_ray
    from saerec.rundir import RunDir
    from saerec.train.ray_train import train_recommender

    ensure_ray()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.workers:
            cfg = apply_overrides(RunConfig(), [f"train.epochs={args.epochs}", f"train.num_workers={n}"])
            cfg.data.data_dir, cfg.data.dataset = args.data_dir, Path(args.data_dir).name
            run = RunDir(Path(tmp) / f"w{n}")
            prep = prepare(run, cfg)
            t = time.time()
            stats = train_recommender(run, cfg, prep)
            results[n] = {"train_tokens_per_second": stats["train_tokens_per_second"],
                          "wall_seconds": time.time() - t, "epochs": stats["epochs_run"]}
            print(f"{n} worker(s): {stats['train_tokens_per_second']:,.0f} tokens/s, "
                  f"{results[n]['wall_seconds']:.0f}s wall", flush=True)
    base = results[args.workers[0]]["train_tokens_per_second"]
    report = {"benchmark": "train_workers", "data_dir": args.data_dir, "epochs": args.epochs, "results": results,
              "speedup_vs_first": {n: r["train_tokens_per_second"] / base for n, r in results.items()},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["speedup_vs_first"], indent=2))


if __name__ == "__main__":
    main()
