"""SAE kinds side by side on one run's cached activations: EV, L0, dead fraction (test users),
sae-eval's k=1 sparse probing (SAE vs neurons), the paper's mean top-genre correlation (SAE vs
neurons), mean absorption, NDCG@10 on the test users with the reconstruction spliced in (beside the
model's own) and, on the synthetic data, the recovery of the planted genre directions. Writes JSON.

Each kind trains in this process with saerec's trainer (``saerec.tuning.trial.run_trial``: the
``saerec tune`` trial, no Ray), from the same normaliser and init sample, then goes through the
same passes as ``saerec sae-eval`` (``saerec.saeeval.stage.run_passes``). Nothing is written into
the run: copy a run you do not own first.

    python benchmarks/sae_kinds_suite.py --run /tmp/ml1m --kinds batchtopk matryoshka --epochs 10 \\
        --set k=32 --out benchmarks/results/sae_kinds_ml1m.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from saerec.config import RunConfig
from saerec.data.attributes import attribute_columns, genre_columns
from saerec.model.checkpoint import load_model, test_pairs
from saerec.rundir import A, RunDir
from saerec.sae.ray_train import norm_and_init
from saerec.saeeval.stage import run_passes
from saerec.saeeval.suite import planted_recovery
from saerec.tuning.experiment import downstream_ndcg
from saerec.tuning.trial import run_trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--kinds", nargs="+", default=["batchtopk", "matryoshka"])
    ap.add_argument("--epochs", type=int, default=None, help="default: the run's sae.epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="sae fields for every kind, e.g. k=32 n_latents=2048")
    ap.add_argument("--sample-rows", type=int, default=100_000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    run = RunDir(Path(args.run))
    cfg = RunConfig.load(run.root / "config.yaml")
    base = replace(cfg.sae, **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    if args.epochs:
        base = replace(base, epochs=args.epochs)
    acts = run.root / "activations"
    norm, init, n_train, d_in = norm_and_init(acts / "sae", base.normalization)
    items = run.read_parquet("recommender/items.parquet")
    attrs, genres = attribute_columns(items), genre_columns(items)
    test = test_pairs(run, load_model(run.recommender)[0].max_len)
    ndcg = downstream_ndcg(run.root, test.inputs, test.targets, run.read_json(A.ACT_META)["layer"])
    ndcg_original = ndcg(None)
    rows = []
    for seed in args.seeds:
        for kind in args.kinds:
            t0 = time.perf_counter()
            res = run_trial(run.root, base, {"kind": kind, "seed": seed}, norm, init, d_in, ndcg, items)
            train_s = time.perf_counter() - t0
            sums, _, probing, _, absorb, _ = run_passes(acts / "test", res.sae, items, attrs, [1],
                                                        args.sample_rows, 8192, cfg.sae_eval.probe_c, 0,
                                                        printer=lambda _: None)
            k1 = probing[probing["k"] == 1].pivot(index="attribute", columns="source", values="auc")
            gk1 = k1.loc[[g for g in genres if g in k1.index]].dropna()
            row = {"kind": kind, "seed": seed, **{k: res.metrics[k] for k in
                                                  ("explained_variance", "l0", "dead_fraction", "rmse")},
                   "ndcg@10_reconstructed": res.metrics["ndcg@10_reconstructed"], "ndcg@10_original": ndcg_original,
                   "k1_auc_sae": float(k1["sae"].mean()), "k1_auc_neurons": float(k1["neurons"].mean()),
                   "k1_sae_beats_neurons_genres": float((gk1["sae"] > gk1["neurons"]).mean()) if len(gk1) else None,
                   **top_correlation(sums, attrs, genres),
                   "mean_absorption_fraction": float(absorb["absorption_fraction"].mean()),
                   "mean_full_absorption_rate": float(absorb["full_absorption_rate"].mean()),
                   "train_seconds": train_s}
            if cfg.data.dataset == "synthetic" and genres:
                p = planted_recovery(sums, res.sae.W_dec.detach().numpy(), attrs, genres)
                row["planted"] = {k: v for k, v in p.items() if not isinstance(v, (list, dict))}
            print(json.dumps(row), flush=True)
            rows.append(row)
            write(args, run, cfg, base, n_train, d_in, rows)          # after every kind: a long run keeps its rows


def top_correlation(sums, attrs: list[str], genres: list[str]) -> dict:
    """The paper's score as ``saerec interpret`` computes it: per genre, the largest Pearson
    correlation of any SAE latent (any raw neuron) with the genre over all test positions, averaged."""
    g = [attrs.index(x) for x in genres if x in attrs]
    if not g:
        return {}
    sae, neurons = sums.correlation()[:, g].max(0).mean(), sums.correlation(neurons=True)[:, g].max(0).mean()
    return {"mean_top_correlation_sae": float(sae), "mean_top_correlation_neurons": float(neurons),
            "top_correlation_ratio": float(sae / neurons) if neurons > 0 else None}


def write(args, run, cfg, base, n_train, d_in, rows) -> None:
    out = {"run": str(run.root), "dataset": cfg.data.dataset, "train_rows": n_train, "d_in": d_in,
           "sae": asdict(base), "kinds": args.kinds, "rows": rows, "host": platform.node(),
           "command": "python benchmarks/sae_kinds_suite.py " + " ".join(
               ["--run", args.run, "--kinds", *args.kinds, "--seeds", *map(str, args.seeds),
                *(["--epochs", str(args.epochs)] if args.epochs else []), *(["--set", *args.set] if args.set else [])])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
