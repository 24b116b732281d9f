"""The steering stage: RUN/{recommender,sae,interpret} -> RUN/steer/.

Writes ``probes.safetensors`` + ``probes.json`` (linear probes), ``sweep.parquet`` and ``sweep.csv``
(one row per curve and value), ``summary.json`` (baselines, per-curve checks, the exactness check,
timings), the plots and ``report.md``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..atomic import write_parquet, write_text
from ..config import RunConfig, SteerConfig
from ..errors import RunError, UsageError
from ..eval.ranking import recommend
from ..contract import Stage
from ..rundir import A, RunDir
from .edits import Edit
from .intervene import Steerer
from .isolation import write_isolation
from .plots import fmt, write_plots
from .probes import ProbeSet, train_probes
from .sweep import Points, default_curves, run_sweep, summarise, sweep_values

log = logging.getLogger("saerec.steer")


def swept_attributes(steerer: Steerer, cfg: SteerConfig) -> list[str]:
    """The configured attributes in the catalog's spelling. With the default list (the paper's five
    MovieLens genres) on a dataset lacking some, the missing ones are skipped, and if none is left the
    five genres with the best-correlated features are used; an explicit list must match exactly."""
    if cfg.attributes != SteerConfig().attributes:
        return [steerer.catalog.canonical(a) for a in cfg.attributes]
    known = {a.lower(): a for a in steerer.catalog.attribute_names()}
    found = [known[a.lower()] for a in cfg.attributes if a.lower() in known]
    if len(found) < len(cfg.attributes):
        log.warning("steering: default attributes missing from this dataset skipped: %s",
                    [a for a in cfg.attributes if a.lower() not in known])
    if not found:
        at = steerer.catalog.attributes
        found = at.sort_values(["is_genre", "sae_correlation"], ascending=False)["attribute"].head(5).tolist()
    return found


def ensure_probes(run: RunDir, steerer: Steerer, cfg: RunConfig, attributes: list[str]) -> ProbeSet:
    """Probes for every genre and every swept attribute; reused when they already cover them."""
    out = run.stage(A.STEER)
    wanted = list(dict.fromkeys([*steerer.items.genres, *attributes]))
    if run.has(A.PROBES):
        probes = ProbeSet.load(out)
        if set(wanted) <= set(probes.attributes) and probes.metrics.get("_rows") == cfg.steer.probe_rows:
            return probes
    probes = train_probes(run.path(A.ACT_SAE), run.path(A.ACT_TEST),
                          steerer.items.items, wanted, steerer.norm, max_rows=cfg.steer.probe_rows,
                          seed=cfg.split.seed)
    probes.metrics["_rows"] = cfg.steer.probe_rows
    probes.save(out)
    return probes


def exactness_check(steerer: Steerer, inputs: list[np.ndarray], attributes: list[str], k: int) -> dict:
    """Delta splice with identity edits (add 0, scale 1) through the full edit path, against the
    plain model: must give the same top-k for every user."""
    base = recommend(steerer.model, inputs, k=k)
    res = {}
    for a in attributes:
        for e in (Edit(a, 0.0, "add"), Edit(a, 1.0, "scale")):
            got = steerer.recommend(inputs, [[e]] * len(inputs), k=k, splice="delta")
            res[f"{a} {e.mode} {e.value:g}"] = float((got == base).all(1).mean())
    return {"fraction_identical": res, "all_identical": all(v == 1.0 for v in res.values())}


def steer_eval_stage(run: RunDir, cfg: RunConfig, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    sc = cfg.steer
    if sc.eval_positions < 1:
        raise UsageError(f"steer.eval_positions must be >= 1, got {sc.eval_positions}")
    steerer = Steerer.from_run(run, probes=False)
    if steerer.catalog is None:
        raise RunError(f"{run.path(A.INTERPRET)}: no feature catalog; run `saerec interpret --run {run.root}` first")
    attributes = swept_attributes(steerer, sc)
    t = time.perf_counter()
    if sc.probe:
        steerer.probes = ensure_probes(run, steerer, cfg, attributes)
    probe_seconds = time.perf_counter() - t
    points = Points.of_test_users(run, steerer.model.max_len, sc.eval_positions, sc.max_users)
    values = sweep_values(sc)
    curves = default_curves(sc, attributes)
    t = time.perf_counter()
    # rows of (history, variant) scored at once: the (rows x items) float32 scores stay within
    # score_mb whatever the catalogue (the chunk was the peak's largest part, and grew with the items)
    max_rows = max(1, min(sc.batch_size * 16, (sc.score_mb << 20) // (4 * steerer.model.n_items)))
    table, base, per_point = run_sweep(steerer, points, curves, values, k=sc.k, max_rows=max_rows,
                                       progress=progress)
    sweep_seconds = time.perf_counter() - t
    last_inputs = [x for x, keep in zip(points.inputs, points.last) if keep]
    exact = exactness_check(steerer, last_inputs, attributes, sc.k)
    checks = summarise(table, base, per_point, points, sc.k)
    base.pop("per_point_ndcg")
    out = run.stage(A.STEER)
    write_parquet(table, run.path(A.SWEEP))
    table.to_csv(out / "sweep.csv", index=False)
    plots = write_plots(table, base, steerer.items.genres, sc.k, out)
    main = next((c.name for c in curves if c.method == "sae" and c.splice == "delta"), curves[0].name)
    isolation = write_isolation(table, base, steerer.items.genres, out, main)
    if run.has(A.ISOLATION_PLOT):
        plots.append(Path(A.ISOLATION_PLOT).name)
    summary = {
        "users": points.users, "points": len(points.targets), "eval_positions": sc.eval_positions,
        "values": values.tolist(), "curves": list(dict.fromkeys(c.name for c in curves)),
        "attributes": attributes, "baselines": base, "curve_checks": checks, "delta_no_edit": exact,
        "probe_metrics": steerer.probes.metrics if steerer.probes is not None else {},
        "seconds": {"probes": probe_seconds, "sweep": sweep_seconds, "total": time.perf_counter() - t0},
        "lists_per_second": len(curves) * len(values) * len(points.targets) / max(sweep_seconds, 1e-9),
        "plots": plots,
        "isolation": {"value": isolation["value"], "curve": main,
                      "scores": isolation["curves"].get(main, {}).get("scores", [])},
    }
    run.write_json(A.STEER_SUMMARY, summary)
    write_text(out / "report.md", report(summary, sc.k))
    return summary


def report(s: dict, k: int) -> str:
    o = s["baselines"]["original"]
    lines = [
        "# Steering evaluation", "",
        f"{s['users']} test users, {s['points']} next-item predictions (each user's last "
        f"{s['eval_positions']} items); values {s['values'][0]:g}..{s['values'][-1]:g}; curves: {', '.join(s['curves'])}.",
        f"Unsteered NDCG@{k} {o[f'ndcg@{k}']:.4f} over all predictions ({o[f'ndcg@{k}_last']:.4f} over each "
        f"user's last item), Coverage@{k} {o[f'coverage@{k}']:.4f}, ILD@{k} {o[f'ild@{k}']:.4f} (one list per user); "
        f"with the SAE reconstruction spliced in: NDCG@{k} {s['baselines']['reconstructed'][f'ndcg@{k}']:.4f}.",
        f"Delta splice with identity edits returns the original top-{k} for every user: "
        f"{s['delta_no_edit']['all_identical']}.",
        *([f"Beyond accuracy, unsteered: Gini@{k} {o[f'gini@{k}']:.4f} (one list per user), long-tail share@{k} "
           f"{o[f'long_tail@{k}']:.4f} (items outside the top 20% by train count), novelty@{k} "
           f"{o[f'novelty@{k}']:.3f} bits; along every curve in sweep.parquet."] if f"gini@{k}" in o else []), "",
        "NDCG drops are relative to the unsteered model, worst over abs(v) <= 2, with paired-bootstrap 95% "
        "intervals over users. Figures in brackets and the last column use each user's last item only (the "
        "paper's protocol).", "",
        "| attribute | curve | feature/probe | Spearman | unsteered share | share at +5 | lift (last item only) | "
        "max NDCG drop (at v; 95% CI) | last item only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in s["curve_checks"]:
        drops = [f"{fmt(c['max_ndcg_drop_abs_le_2' + x])} (v={c['worst_value' + x]:g}; "
                 f"{fmt(c['ndcg_drop_ci95' + x][0])}..{fmt(c['ndcg_drop_ci95' + x][1])})" for x in ("", "_last_item")]
        lines.append(f"| {c['attribute']} | {c['curve']} | {c['target']} | {fmt(c['spearman'])} | "
                     f"{fmt(c['unsteered_share'])} | {fmt(c['share_at_5'])} | {fmt(c['lift'])} "
                     f"({fmt(c['lift_last_item'])}) | {drops[0]} | {drops[1]} |")
    iso = s.get("isolation", {})
    if iso.get("scores"):
        lines += ["", f"Isolation at value {iso['value']:g} ({iso['curve']}): own share change over the mean "
                      "absolute change of the other genres' shares (isolation.parquet/json, isolation.png).", "",
                  "| attribute | own change | mean abs off-target | isolation | worst off-target |", "|---|---|---|---|---|"]
        lines += [f"| {r['attribute']} | {fmt(r['own_change'])} | {fmt(r['mean_abs_off_target'])} | "
                  f"{fmt(r['isolation'])} | {r['worst_off_target']} ({fmt(r['worst_off_target_change'])}) |"
                  for r in iso["scores"]]
    lines += ["", f"Sweep: {s['seconds']['sweep']:.1f} s ({s['lists_per_second']:,.0f} lists/s); "
                  f"probes {s['seconds']['probes']:.1f} s.", ""]
    lines += [f"![{p}]({p})" for p in s["plots"]]
    return "\n".join(lines) + "\n"


STAGE = Stage("steer", ("steer",), (A.SAE_WEIGHTS, A.ATTRIBUTES, A.FEATURES, A.SEQUENCES), (A.STEER_SUMMARY,),
              steer_eval_stage)
