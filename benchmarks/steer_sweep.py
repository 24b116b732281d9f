"""Steering sweep speed: the batched last-step replay vs one full forward pass per value, side by side.

On a finished run (recommender + SAE + interpretation + probes from ``saerec steer-eval``), times:

- ``replay``: ``Steerer.recommend_variants`` (each history run once, the n edited last steps replayed
  through the later blocks together), the path ``saerec steer-eval`` uses;
- ``full_forward``: ``Steerer.recommend`` once per value (a full batched forward pass each time).

Both sweep the issue's default (Action, Children, Fantasy, Sci-Fi, Western x values -10..10 step 1 x
all test users) for the SAE feature (set, delta splice) and the probe (add, delta splice), and
check that both give the same top-10 lists. Then it times the replay alone on what ``saerec
steer-eval`` measures by default: each test user's last ``--eval-positions`` predictions (10; the
full-forward path would take ten times its one-per-user time there). Reports medians over
``--rounds`` and writes JSON.

    python benchmarks/steer_sweep.py --run runs/main --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from saerec.config import SteerConfig
from saerec.rundir import RunDir
from saerec.steer import Edit, Steerer
from saerec.steer.sweep import Points

ATTRIBUTES = ["Action", "Children", "Fantasy", "Sci-Fi", "Western"]
CURVES = [("sae", "set"), ("probe", "add")]


def sweep(steerer: Steerer, inputs, values, replay: bool) -> dict:
    out = {}
    for attr in ATTRIBUTES:
        for method, mode in CURVES:
            variants = [[Edit(attr, float(v), mode, "last", method)] for v in values]
            if replay:
                out[(attr, method)] = steerer.recommend_variants(inputs, variants)
            else:
                out[(attr, method)] = np.stack([steerer.recommend(inputs, [e] * len(inputs)) for e in variants], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--eval-positions", type=int, default=SteerConfig().eval_positions,
                    help="predictions per test user for the replay-only timing (steer-eval's default)")
    ap.add_argument("--out", default="benchmarks/results/steer_sweep.json")
    args = ap.parse_args()
    run = RunDir(args.run)
    if not run.has("steer/probes.safetensors"):
        raise SystemExit(f"{run.root}: no probes; run `saerec steer-eval --run {args.run}` first")
    steerer = Steerer.from_run(run)
    held = Points.of_test_users(run, steerer.model.max_len, args.eval_positions)   # one read of the test users
    points = held.inputs
    inputs = [x for x, keep in zip(held.inputs, held.last) if keep]     # each user's last prediction, as steer-eval
    values = np.arange(-10, 11, 1.0)
    lists = len(ATTRIBUTES) * len(CURVES) * len(values) * len(inputs)
    lists_points = lists // len(inputs) * len(points)
    times = {"replay": [], "full_forward": []}
    results = {}
    for r in range(args.rounds):
        for name in times:
            t = time.perf_counter()
            results[name] = sweep(steerer, inputs, values, replay=name == "replay")
            times[name].append(time.perf_counter() - t)
            print(f"round {r + 1}/{args.rounds} {name}: {times[name][-1]:.1f}s", flush=True)
    times["replay_eval_positions"] = []
    for r in range(args.rounds):
        t = time.perf_counter()
        sweep(steerer, points, values, replay=True)
        times["replay_eval_positions"].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds} replay over {len(points)} predictions: "
              f"{times['replay_eval_positions'][-1]:.1f}s", flush=True)
    same = np.mean([(results["replay"][k] == results["full_forward"][k]).all(-1).mean() for k in results["replay"]])
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "benchmark": "steer_sweep", "run": str(run.root), "users": len(inputs), "values": len(values),
        "curves": [f"{m}/{mode}/delta" for m, mode in CURVES], "attributes": ATTRIBUTES, "lists": lists,
        "seconds": times, "median_seconds": med,
        "eval_positions": args.eval_positions, "predictions": len(points),
        "lists_eval_positions": lists_points,
        "lists_per_second": {k: (lists_points if k == "replay_eval_positions" else lists) / v for k, v in med.items()},
        "speedup_replay_vs_full_forward": med["full_forward"] / med["replay"],
        "fraction_identical_top10": float(same),
        "target_seconds": 180, "meets_target": med["replay"] <= 180,
        "meets_target_eval_positions": med["replay_eval_positions"] <= 180,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("median_seconds", "speedup_replay_vs_full_forward",
                                              "fraction_identical_top10", "meets_target",
                                              "meets_target_eval_positions")}, indent=2))


if __name__ == "__main__":
    main()
