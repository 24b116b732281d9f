"""The recommender quality table across architectures: per model, the mean and range over its seeds.

Reads ``RUN/recommender/metrics.json`` of runs already trained (``saerec train`` or ``saerec run``;
one run per seed) and writes JSON plus a Markdown table: NDCG@10, HitRate@10, Coverage@10, best
epoch and epochs run, with popularity (each run evaluates it on the same test users) as the last row.

    python benchmarks/quality_table.py --out benchmarks/results/quality_table.json \\
        gptrec=runs/gptrec-s0,runs/gptrec-s1,runs/gptrec-s2 "sasrec (CE)=runs/sasrec-ce-s0,runs/sasrec-ce-s1"
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

KEYS = ("ndcg@10", "hit_rate@10", "coverage@10")


def summarise(values: list[float]) -> dict:
    """Mean, min, max and sample std of one metric over seeds.

    >>> summarise([0.1, 0.2, 0.3])["mean"]
    0.2
    """
    return {"mean": round(statistics.mean(values), 10), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def cell(s: dict) -> str:
    return f"{s['mean']:.4f}" + (f" ({s['min']:.4f}-{s['max']:.4f})" if s["max"] > s["min"] else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=RUN[,RUN...] (one run per seed)")
    ap.add_argument("--out", default="benchmarks/results/quality_table.json")
    args = ap.parse_args()
    rows, pop = {}, {k: [] for k in KEYS}
    for spec in args.models:
        label, _, runs = spec.partition("=")
        metrics = [json.loads((Path(r) / "recommender" / "metrics.json").read_text()) for r in runs.split(",")]
        rows[label] = {k: summarise([m[k] for m in metrics]) for k in KEYS}
        rows[label]["best_epoch"] = [m.get("best_epoch") for m in metrics]
        rows[label]["epochs_run"] = [m.get("epochs_run") for m in metrics]
        rows[label]["runs"] = runs.split(",")
        for k in KEYS:
            pop[k] += [m["popularity"][k] for m in metrics]
    rows["popularity"] = {k: summarise(v) for k, v in pop.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print("| model | seeds | NDCG@10 | HitRate@10 | Coverage@10 | best epoch / epochs run |")
    print("|---|---|---|---|---|---|")
    for label, r in rows.items():
        epochs = ", ".join(f"{b}/{e}" for b, e in zip(r.get("best_epoch", []), r.get("epochs_run", [])))
        n = r["ndcg@10"]["n"] if label != "popularity" else "-"
        print(f"| {label} | {n} | {cell(r['ndcg@10'])} | {cell(r['hit_rate@10'])} | {cell(r['coverage@10'])} | "
              f"{epochs or '-'} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
