"""Ray Tune over the SAE grid on the shared synthetic run: every trial reports reconstruction,
downstream and interpretability metrics from the cached activations; tables and plots are written;
an experiment whose trials failed resumes and reruns only those."""

import pandas as pd
import pytest

from conftest import error_lines

from saerec.cli import main
from saerec.tuning.experiment import TuneSpec, pareto_front, run_tune


def test_tune_grid_results_tables_plots_and_resume(own_interpreted_run, tmp_path, capsys):
    run, cfg = own_interpreted_run
    spec = TuneSpec(l1=[0.02, 0.3], n_latents=[16, 64], seeds=2, epochs=1, trial_cpus=1, sae_eval_rows=3000)
    mtime = (run.root / "activations" / "meta.json").stat().st_mtime
    # first attempt: every trial with seed 1 fails once (injected), the experiment ends with errors
    (tmp_path / "markers").mkdir()
    for m in (16, 64):
        for l1 in (0.02, 0.3):
            (tmp_path / "markers" / f"l1={l1}_m={m}_relu_s=0").touch()     # seed 0 trials will not fail
    first = run_tune(run, cfg, spec, name="grid_test", fail_once=str(tmp_path / "markers"))
    assert len(first) == 8
    assert first.loc[first["seed"] == 1, "explained_variance"].isna().all()
    assert first.loc[first["seed"] == 0, "explained_variance"].notna().all()
    done_before = first.loc[first["seed"] == 0, "time_total_s"].to_numpy()
    # resume: only the failed trials run again (the markers now exist, so they succeed)
    assert main(["tune", "--run", str(run.root), "--spec", str(write_spec(tmp_path, spec)), "--name", "grid_test",
                 "--resume"]) == 0
    assert "8 trials (0 errors)" in capsys.readouterr().out
    df = pd.read_parquet(run.root / "tune" / "results.parquet")
    assert len(df) == 8 and df[["explained_variance", "interpretability", "ndcg@10_reconstructed"]].notna().all().all()
    assert (df.loc[df["seed"] == 0, "time_total_s"].to_numpy() == done_before).all()   # finished trials kept
    assert (df["interpretability"].between(0, 1)).all() and (df["l0"] > 0).all()
    # sae-eval's columns per trial (k=1 probing, SAE and neurons; absorption), on 3000 test positions
    assert df["k1_auc_sae"].between(0.5, 1).all() and df["k1_auc_neurons"].between(0.5, 1).all()
    assert df["mean_absorption"].between(0, 1).all()
    # a stronger L1 gives sparser codes on average
    assert df[df["l1"] == 0.3]["l0"].mean() < df[df["l1"] == 0.02]["l0"].mean()
    for name in ("results.csv", "table1.csv", "table1.md", "fig3_interpretability.png", "pareto.png", "summary.json"):
        assert (run.root / "tune" / name).exists(), name
    t1 = pd.read_csv(run.root / "tune" / "table1.csv")
    assert len(t1) == 4 and (t1["seeds"] == 2).all()
    assert (run.root / "activations" / "meta.json").stat().st_mtime == mtime          # nothing re-extracted


def write_spec(tmp_path, spec: TuneSpec):
    import yaml
    from dataclasses import asdict

    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(asdict(spec)))
    return p


def test_pareto_front():
    import numpy as np

    x = np.array([0.9, 0.8, 0.95, 0.7, 0.85])
    y = np.array([0.3, 0.5, 0.1, 0.6, 0.2])
    assert [int(i) for i in pareto_front(x, y)] == [3, 1, 0, 2]


@pytest.mark.parametrize("text, line", [
    ("kind: [gated]\n", "TuneSpec.kind: 'gated' is not one of 'relu', 'topk', 'batchtopk', 'jumprelu', 'matryoshka'"),
    ("seeds: 0\n", "TuneSpec.seeds: 0 must be >= 1"),
    ("l1: [0.1, -0.5]\n", "TuneSpec.l1: -0.5 must be >= 0.0"),
])
def test_bad_spec_exits_2_before_the_run_is_touched(text, line, tmp_path, capsys):
    """The spec is checked when loaded: a typo in ``kind`` used to fail inside every trial."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert main(["tune", "--run", str(tmp_path / "run"), "--spec", str(spec)]) == 2
    assert error_lines(capsys.readouterr().err) == [f"saerec: error: {spec}: {line}"]
    assert not (tmp_path / "run").exists()


def test_trial_follows_the_step_budget_when_epochs_is_unset(own_interpreted_run):
    """A trial (saerec tune's, and the kinds suite's) with ``sae.epochs: null`` trains the step budget's
    epochs, as the SAE stage does, instead of failing on ``range(None)``."""
    from dataclasses import replace

    from saerec.activations.store import count_rows
    from saerec.sae.base import planned_epochs
    from saerec.sae.ray_train import norm_and_init
    from saerec.tuning.trial import run_trial

    run, cfg = own_interpreted_run
    acts = run.root / "activations"
    norm, init, _, d_in = norm_and_init(acts / "sae", cfg.sae.normalization)
    base = replace(cfg.sae, epochs=None, steps=2 * count_rows(acts / "sae") // cfg.sae.batch_size + 1, n_latents=16)
    res = run_trial(run.root, base, {"seed": 0}, norm, init, d_in, None, run.read_parquet("recommender/items.parquet"))
    assert res.metrics["epoch"] == planned_epochs(base, count_rows(acts / "sae")) == 3
