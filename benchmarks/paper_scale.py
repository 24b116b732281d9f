"""Paper scale: the whole pipeline on the ML-20M-shaped synthetic log (``data.synthetic_preset:
ml-20m``) at each ``--scales`` share of ML-20M's users (0.1: about 2M interactions; 1.0: about 20M),
with a small epoch budget. Writes JSON.

Each stage runs as its own ``saerec`` process (``data``, ``train`` (training, then the test-set
evaluation), ``evaluate`` (the evaluation alone, again), ``extract``, ``sae``, ``interpret``,
``steer-eval``, ``sae-eval``), measured as in ``benchmarks/streaming_scale.py``: wall time and
the peak total PSS of the stage's whole process tree (driver, Ray's GCS and raylet, every worker),
sampled every 0.2 s. The stages' own output (their progress lines) is echoed, prefixed with the
scale and stage. Per stage, ``rows`` is what it works through and ``seconds_per_million_rows`` its wall
time per million of them:

- data: interactions generated, split and written;
- train: training tokens (epochs x tokens per epoch); evaluate, interpret, steer-eval, sae-eval:
  the test users' interactions (their positions);
- extract: activation rows written (SAE part + test users); sae: activations x SAE epochs.

Projection of a full-quality run (``projected``): what the default config would do, from the
measured per-epoch times. Training: ``--full-epochs`` epochs (default 43: the default early
stopping, patience 5, ended the ML-1M runs after their best epochs 37-39 (docs/results.md); no
ML-20M-sized run has been trained to convergence, so the epoch count at this size is an assumption)
x the measured seconds per training epoch; the SAE: the epochs its default step budget gives that
many activations (``sae.steps``; one epoch from about 1.5M activations up) x the measured seconds
per SAE epoch; every other stage once, as measured (a stage's fixed start-up cost is included, and
counted again in each extrapolation). ``projected_ml20m`` scales the largest measured scale's times
linearly in interactions to the full ML-20M size (1.0), which assumes constant per-row time: the
must-show check below is what says whether that holds.

``ratios`` (when two or more scales ran): for each stage, the largest scale's peak PSS and its
seconds per row over the smallest scale's (the issue's must-show: at most 1.25x and 1.5x from 2M
to 20M interactions).

    nice -n 10 python benchmarks/paper_scale.py --scales 0.01 0.1        # about 20 min on 2 busy cores
    python benchmarks/paper_scale.py                                      # 0.1 and 1.0 (2M and 20M)
    python benchmarks/paper_scale.py --scales 0.1 --set steer.attributes=[Action]
    python benchmarks/paper_scale.py --scales 0.01 0.1 --stages data evaluate   # no training: untrained weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_scale import measure, parquet_rows  # noqa: E402  (the process-tree PSS sampler)

RAY_START_TIMEOUT = "timed out during startup"     # Ray waits 30 s for its raylet, hard-coded
STAGES = ["data", "train", "evaluate", "extract", "sae", "interpret", "steer-eval", "sae-eval"]


def stage_rows(stage: str, run: Path, args) -> int:
    """The rows ``stage`` worked through (see the module docstring)."""
    split = json.loads((run / "data" / "split.json").read_text())
    if stage == "data":
        return int(split["interactions_total"])
    if stage == "train":
        m = json.loads((run / "recommender" / "metrics.json").read_text())
        return int(round(m["train_tokens_per_second"] * m["train_seconds"]))
    if stage == "extract":
        return sum(parquet_rows(run / "activations" / p) for p in ("sae", "test"))
    if stage == "sae":
        m = json.loads((run / "sae" / "metrics.json").read_text())
        return int(m["train_activations"]) * args.sae_epochs
    return int(split["test_interactions"])


def stage_cmd(stage: str, run: Path, args, sets: list[str]) -> list[str]:
    base = [sys.executable, "-m", "saerec", stage, "--run", str(run)]
    if stage == "data":
        return base + ["--dataset", "synthetic"] + sets
    if stage == "train":
        return base + ["--epochs", str(args.epochs), "--set", "train.patience=1000"] + sets
    if stage == "sae":
        return base + ["--set", f"sae.epochs={args.sae_epochs}"] + sets
    return base + sets


def untrained_model(run: Path, sets: list[str]) -> None:
    """RUN/recommender with initial weights, for measuring later stages without the train stage (a
    forward pass costs the same memory and time whatever the weights)."""
    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import item_counts
    from saerec.model.checkpoint import catalogue_frame, save_model
    from saerec.model.registry import build_model
    from saerec.rundir import A, RunDir

    cfg = apply_overrides(RunConfig(), sets[1::2])
    rd = RunDir(run)
    index, _ = item_counts(rd)
    save_model(run / "recommender", build_model(cfg.model, index.size))
    catalogue_frame(rd.read_parquet(A.ITEMS), index).to_parquet(rd.path(A.CATALOGUE), index=False)
    rd.write_json(A.REC_SPLIT, rd.read_json(A.SPLIT))


def project(res: dict, args, factor: float = 1.0) -> dict:
    """Seconds of a full-quality run at ``factor`` times this scale's size, from the measured stages
    (module docstring; every time scales linearly in rows). The SAE's default budget is in steps, so
    its epochs follow from the activations at the projected size (many at 0.01, one at 1.0), not
    from the measured scale's."""
    from saerec.config import SAEConfig
    from saerec.sae.base import planned_epochs

    per_stage, sae_epochs = {}, None
    for stage, r in res["stages"].items():
        if r.get("returncode"):
            continue
        if stage == "train":
            per_epoch = r["train_seconds"] / max(r["epochs_run"], 1)
            per_stage[stage] = factor * (r["wall_seconds"] - r["train_seconds"] + args.full_epochs * per_epoch)
        elif stage == "sae":
            per_epoch = r["train_seconds"] / args.sae_epochs
            sae_epochs = planned_epochs(SAEConfig(), int(factor * r["rows"] / args.sae_epochs))
            per_stage[stage] = factor * (r["wall_seconds"] - r["train_seconds"] + sae_epochs * per_epoch)
        elif stage != "evaluate":                      # already inside train
            per_stage[stage] = factor * r["wall_seconds"]
    return {"seconds": per_stage, "total_seconds": sum(per_stage.values()), "train_epochs": args.full_epochs,
            "sae_epochs": sae_epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[0.1, 1.0], help="shares of ML-20M's 138,493 users")
    ap.add_argument("--epochs", type=int, default=1, help="GPTRec epochs (early stopping off)")
    ap.add_argument("--sae-epochs", type=int, default=1)
    ap.add_argument("--full-epochs", type=int, default=43, help="training epochs assumed for a full-quality run")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES)
    ap.add_argument("--set", action="append", default=[], help="extra config override for every stage (repeatable)")
    ap.add_argument("--workdir", default="benchmarks/results/paper_scale")
    ap.add_argument("--out", default="benchmarks/results/paper_scale.json")
    ap.add_argument("--retries", type=int, default=2, help="reruns of a stage whose Ray runtime failed to start")
    ap.add_argument("--keep", action="store_true", help="keep each scale's run directory (gigabytes at 1.0)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for scale in sorted(args.scales):
        tag = f"{scale:g}"
        run = work / f"run_{tag}"
        shutil.rmtree(run, ignore_errors=True)
        sets = [x for s in ["data.synthetic_preset=ml-20m", f"data.synthetic_scale={scale}", *args.set]
                for x in ("--set", s)]
        res = {"scale": scale, "stages": {}}
        for stage in [s for s in STAGES if s in args.stages]:
            if stage != "data" and "train" not in args.stages and not (run / "recommender").exists():
                untrained_model(run, sets)
                print(f"[{tag}] train skipped: the later stages use an untrained GPTRec", flush=True)
            print(f"[{tag}] {stage}: running", flush=True)
            for attempt in range(args.retries + 1):
                log = work / f"{stage}_{tag}.log"
                r = measure(stage_cmd(stage, run, args, sets), log, echo=f"[{tag} {stage}] ", check=False)
                if not r.get("returncode") or RAY_START_TIMEOUT not in log.read_text() or attempt == args.retries:
                    break
                print(f"[{tag}] {stage}: Ray's local runtime did not start in time (a loaded machine); "
                      f"retry {attempt + 1}/{args.retries}", flush=True)
            r["attempts"] = attempt + 1
            if r.get("returncode"):
                print(f"[{tag}] {stage}: FAILED ({r['returncode']}); see {work / f'{stage}_{tag}.log'}", flush=True)
                res["stages"][stage] = r
                break
            r["rows"] = stage_rows(stage, run, args)
            r["seconds_per_million_rows"] = 1e6 * r["wall_seconds"] / max(r["rows"], 1)
            r["rows_per_second"] = r["rows"] / max(r["wall_seconds"], 1e-9)
            if stage == "train":
                m = json.loads((run / "recommender" / "metrics.json").read_text())
                r.update({k: m[k] for k in ("train_seconds", "epochs_run", "train_tokens_per_second", "ndcg@10")})
            if stage == "sae":
                m = json.loads((run / "sae" / "metrics.json").read_text())
                r.update({k: m[k] for k in ("train_seconds", "train_activations_per_second", "explained_variance")})
            res["stages"][stage] = r
            results[tag] = res
            save(results, args)
            print(f"[{tag}] {stage}: {r['wall_seconds']:.0f}s, {r['rows']:,} rows ({r['rows_per_second']:,.0f}/s), "
                  f"peak {r['peak_pss_mb']:,.0f} MB", flush=True)
        split = run / "data" / "split.json"
        if split.exists():
            s = json.loads(split.read_text())
            res["split"] = {k: s.get(k) for k in ("interactions_total", "rec_interactions", "sae_interactions",
                                                  "test_interactions", "rec_users", "sae_users", "test_users")}
        results[tag] = res
        save(results, args)
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    report = save(results, args)
    print(json.dumps({k: report.get(k) for k in ("ratios", "projected_ml20m")}, indent=2))


def save(results: dict, args) -> dict:
    """The report from the stages measured so far, written to ``--out`` (after every stage: a run cut
    short keeps what it measured)."""
    for res in results.values():
        res["projected"] = project(res, args)
    tags = list(results)
    report = {"benchmark": "paper_scale", "scales": tags, "epochs": args.epochs, "sae_epochs": args.sae_epochs,
              "sets": args.set, "results": results}
    lo, hi = results[tags[0]], results[tags[-1]]
    if len(tags) > 1:
        both = [s for s in hi["stages"] if s in lo["stages"] and "rows" in hi["stages"][s] and "rows" in lo["stages"][s]]
        report["ratios"] = {
            "from": tags[0], "to": tags[-1],
            "peak_pss": {s: hi["stages"][s]["peak_pss_mb"] / lo["stages"][s]["peak_pss_mb"] for s in both},
            "seconds_per_row": {s: hi["stages"][s]["seconds_per_million_rows"] / lo["stages"][s]["seconds_per_million_rows"]
                                for s in both}}
    f = 1.0 / hi["scale"]
    full = project(hi, args, f)
    report["projected_ml20m"] = {"from_scale": hi["scale"], "factor": f, "seconds": full["seconds"],
                                 "sae_epochs": full["sae_epochs"], "total_hours": full["total_seconds"] / 3600}
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
