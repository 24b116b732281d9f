"""``saerec tune``: Ray Tune over the SAE grid (L1 x dictionary size x SAE kind x seeds).

Trials run as Ray Tune function trainables, ``trial_cpus`` each, as many at once as the cluster's
CPUs allow. The activations are read from the run (extracted once); the normaliser, init sample and
item table go to the object store once (``tune.with_parameters``). Results land in ``RUN/tune/``:
``results.parquet``/``.csv`` (one row per trial), ``table1.csv``/``.md`` (mean and std over seeds),
``fig3_interpretability.png`` (vs L1 and vs dictionary size), ``pareto.png`` (interpretability vs
explained variance), ``summary.json``. ``--resume`` continues an interrupted experiment: finished
trials are kept, unfinished or failed ones run again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..atomic import save_figure, write_parquet
from ..checks import NonNegative, NonNegativeFloat, Positive, PositiveFloat
from ..config import RunConfig, Section
from ..errors import UsageError
from ..rundir import A, RunDir
from ..sae.base import SAEKind

log = logging.getLogger("saerec.tune")

METRICS = ["explained_variance", "rmse", "l0", "dead_fraction", "ndcg@10_reconstructed", "interpretability",
           "k1_auc_sae", "k1_auc_neurons", "mean_absorption"]


@dataclass
class TuneSpec(Section):
    """A search space: ``tune/*.yaml`` files hold these fields, checked when loaded (a typo in ``kind``
    fails at once, not in every trial)."""

    l1: list[NonNegativeFloat] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0])
    n_latents: list[Positive] = field(default_factory=lambda: [64, 256, 1024, 2048, 8192])
    kind: list[SAEKind] = field(default_factory=lambda: ["relu"])
    seeds: Positive = 5                    # the paper averaged 5
    epochs: Positive = 5
    trial_cpus: PositiveFloat = 1.0
    max_concurrent: Positive | None = None     # None: cluster CPUs / trial_cpus
    downstream: bool = True               # NDCG@10 with the reconstruction spliced in, per trial
    sae_eval_rows: NonNegative = 50_000    # test positions for the per-trial sae-eval columns; 0: skip them

    @classmethod
    def load(cls, path: str | Path) -> "TuneSpec":
        p = Path(path)
        if not p.exists():
            raise UsageError(f"--spec {p}: no such file")
        d = yaml.safe_load(p.read_text()) or {}
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UsageError(f"{p}: unknown keys {sorted(unknown)} (known: {', '.join(cls.__dataclass_fields__)})")
        try:
            return cls(**d)
        except UsageError as e:
            raise UsageError(f"{p}: {e}") from None

    def trials(self) -> int:
        return len(self.l1) * len(self.n_latents) * len(self.kind) * self.seeds


def downstream_ndcg(run_root, inputs, targets, layer: str):
    """``ndcg(sae)``: NDCG@10 on the test users (``inputs``, ``targets``) with an SAE's reconstruction
    spliced in at ``layer`` (the paper's splice); ``ndcg(None)``: the model's own, unspliced."""
    from ..eval.metrics import ranking_metrics
    from ..eval.ranking import recommend
    from ..model.checkpoint import load_model
    from ..sae.splice import splice

    model, _ = load_model(Path(run_root) / "recommender")

    def ndcg(sae) -> float:
        edits = {layer: splice(sae, "reconstruction")} if sae is not None else None
        return ranking_metrics(recommend(model, inputs, interventions=edits), targets, model.n_items)["ndcg@10"]

    return ndcg


def _trainable(config: dict, shared: dict) -> None:
    import torch
    from ray import tune

    from .trial import run_trial

    marker = shared.get("fail_once")
    if marker:                                # fault injection (tests): fail each trial's first attempt
        m = Path(marker) / f"l1={config['l1']}_m={config['n_latents']}_{config['kind']}_s={config['seed']}"
        if not m.exists():
            m.parent.mkdir(parents=True, exist_ok=True)
            m.touch()
            raise RuntimeError("injected failure (fail_once)")
    torch.set_num_threads(max(1, int(shared["threads"])))
    ndcg = downstream_ndcg(shared["run_root"], shared["inputs"], shared["targets"], shared["layer"]) \
        if shared["downstream"] else None
    res = run_trial(Path(shared["run_root"]), shared["base"], {**config, "epochs": shared["epochs"]}, shared["norm"],
                    shared["init_sample"], shared["d_in"], ndcg, shared["items"], report=tune.report,
                    suite_rows=shared["suite_rows"])
    tune.report(res.metrics)


def run_tune(run: RunDir, cfg: RunConfig, spec: TuneSpec, name: str = "sae_grid", resume: bool = False,
             fail_fast: bool = False, fail_once: str | None = None) -> pd.DataFrame:
    """Run (or, with ``resume``, continue) the experiment ``name``; ``fail_once`` is a test hook: a
    folder of markers, and a trial without its marker fails once."""
    from ray import tune

    from ..model.checkpoint import load_model, test_pairs
    from ..raycluster import cluster_cpus, ensure_ray
    from ..sae.ray_train import norm_and_init
    from ..storage import clear_storage

    if not run.has(A.ACT_META):
        raise UsageError(f"{run.root}: no activations; run `saerec extract --run {run.root}` first")
    ensure_ray()
    meta = run.read_json(A.ACT_META)
    norm, init_sample, _, d_in = norm_and_init(run.path(A.ACT_SAE), cfg.sae.normalization)
    model, _ = load_model(run.recommender)
    test = test_pairs(run, model.max_len)
    inputs, targets = test.inputs, test.targets
    shared = {"run_root": str(run.root), "base": cfg.sae, "norm": norm, "init_sample": init_sample, "d_in": d_in,
              "items": run.read_parquet(A.CATALOGUE), "inputs": inputs, "targets": targets,
              "layer": meta["layer"], "epochs": spec.epochs, "downstream": spec.downstream,
              "threads": spec.trial_cpus, "fail_once": fail_once, "suite_rows": spec.sae_eval_rows}
    concurrent = spec.max_concurrent or max(1, int(cluster_cpus() // spec.trial_cpus))
    trainable = tune.with_resources(tune.with_parameters(_trainable, shared=shared), {"cpu": spec.trial_cpus})
    storage = run.ray_path("tune/ray")          # the run's URI for a remote run, as for Ray Train
    path = f"{storage}/{name}"
    t0 = time.time()
    if resume and tune.Tuner.can_restore(path):
        log.info("resuming %s", path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        clear_storage(storage, name)
        space = {"l1": tune.grid_search(list(spec.l1)), "n_latents": tune.grid_search(list(spec.n_latents)),
                 "kind": tune.grid_search(list(spec.kind)), "seed": tune.grid_search(list(range(spec.seeds)))}
        tuner = tune.Tuner(trainable, param_space=space,
                           tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
                           run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1,
                                                     failure_config=tune.FailureConfig(fail_fast=fail_fast)))
    log.info("tuning %d trials, %d at a time", spec.trials(), concurrent)
    grid = tuner.fit()
    rows = []
    for r in grid:                                   # every trial, the failed ones too (their metrics empty)
        c, m = r.config or {}, r.metrics or {}
        rows.append({"kind": c.get("kind"), "n_latents": c.get("n_latents"), "l1": c.get("l1"), "seed": c.get("seed"),
                     **{k: m.get(k, np.nan) for k in [*METRICS, "epoch", "time_total_s"]},
                     "error": str(r.error).splitlines()[0][:200] if r.error else ""})
    df = pd.DataFrame(rows).sort_values(["kind", "n_latents", "l1", "seed"]).reset_index(drop=True)
    write_results(run, df, spec, errors=grid.num_errors, seconds=time.time() - t0, concurrent=concurrent)
    return df


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds for every (kind, dictionary size, L1): the paper's Table 1 across L1."""
    cols = [m for m in METRICS if m in df]
    g = df[df["error"] == ""].groupby(["kind", "n_latents", "l1"])[cols] if "error" in df else \
        df.groupby(["kind", "n_latents", "l1"])[cols]
    out = g.mean().add_suffix("_mean").join(g.std().add_suffix("_std")).join(g.size().rename("seeds"))
    return out.reset_index()


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points not dominated in (higher x, higher y), sorted by x."""
    order = np.argsort(-x, kind="stable")
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(sorted(front, key=lambda i: x[i]), dtype=int)


def write_results(run: RunDir, df: pd.DataFrame, spec: TuneSpec, errors: int, seconds: float, concurrent: int) -> None:
    from ..interpret.report import _plt

    out = run.stage("tune")
    write_parquet(df, out / "results.parquet")
    df.to_csv(out / "results.csv", index=False)
    t1 = table1(df)
    t1.to_csv(out / "table1.csv", index=False)
    (out / "table1.md").write_text(t1.to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else t1.to_string())
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind, gk in t1.groupby("kind"):
        for m, g in gk.groupby("n_latents"):
            axes[0].errorbar(g["l1"], g["interpretability_mean"], yerr=g["interpretability_std"].fillna(0),
                             marker="o", capsize=3, label=f"{kind} {m}")
        for l1, g in gk.groupby("l1"):
            axes[1].errorbar(g["n_latents"], g["interpretability_mean"], yerr=g["interpretability_std"].fillna(0),
                             marker="o", capsize=3, label=f"{kind} L1 {l1:g}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("L1 coefficient")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("dictionary size")
    for ax in axes:
        ax.set_ylabel("interpretability (mean top genre correlation)")
        ax.legend(fontsize=7)
    fig.suptitle("Interpretability vs L1 and dictionary size (mean and std over seeds; paper Figure 3)")
    fig.tight_layout()
    save_figure(fig, out / "fig3_interpretability.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ok = df.dropna(subset=["explained_variance", "interpretability"]).reset_index(drop=True)
    x, y = ok["explained_variance"].to_numpy(), ok["interpretability"].to_numpy()
    sc = ax.scatter(x, y, c=np.log2(ok["n_latents"].astype(float)), s=18 + 40 * np.log10(ok["l1"] / ok["l1"].min() + 1),
                    cmap="viridis")
    front = pareto_front(x, y)
    ax.plot(x[front], y[front], "r-", lw=1.5, label="Pareto front")
    ax.set_xlabel("explained variance")
    ax.set_ylabel("interpretability")
    fig.colorbar(sc, ax=ax, label="log2 dictionary size")
    ax.legend()
    ax.set_title("Interpretability vs reconstruction, every trial")
    fig.tight_layout()
    save_figure(fig, out / "pareto.png", dpi=110)
    plt.close(fig)
    run.write_json(A.TUNE_SUMMARY, {
        "spec": asdict(spec), "trials": int(len(df)), "errors": int(errors), "seconds": seconds,
        "concurrent_trials": concurrent,
        "pareto": ok.iloc[front][["kind", "n_latents", "l1", "seed", "explained_variance", "interpretability"]]
        .to_dict(orient="records")})


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
