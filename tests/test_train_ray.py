"""Real Ray Train runs (gloo, 2 workers) on synthetic data with planted genres."""

import json
import os

import pytest

from saerec.config import RunConfig, apply_overrides
from saerec.data.prepare import load_prepared, prepare
from saerec.eval.evaluate import evaluate_run
from saerec.rundir import RunDir
from saerec.train.ray_train import train_recommender


def synthetic_cfg(**over) -> RunConfig:
    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=700", "data.synthetic_items=150",
        "data.synthetic_genres=5", "model.n_layers=2", "model.d_model=32", "model.max_len=50",
        "train.epochs=6", "train.patience=6", "train.batch_tokens=2048", "train.lr=0.003",
    ])
    for k, v in over.items():
        apply_overrides(cfg, [f"{k}={v}"])
    return cfg


def test_two_worker_ray_train_beats_popularity(ray_session, tmp_path):
    cfg = synthetic_cfg(**{"train.num_workers": 2, "train.cpus_per_worker": 1})
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    stats = train_recommender(run, cfg, prep)
    assert stats["num_workers"] == 2 and stats["epochs_run"] >= 1
    assert stats["train_tokens_per_second"] > 0
    history = json.loads((run.recommender / "history.json").read_text())
    assert len(history) == stats["epochs_run"]
    # the two ranks ran in two worker processes (pids gathered over the process group), not in this one
    assert {tuple(r["pids"]) for r in history} == {tuple(history[0]["pids"])}
    pids = history[0]["pids"]
    assert len(pids) == len(set(pids)) == 2 and os.getpid() not in pids
    assert pids == [int((run.recommender / "ray" / "pids" / f"rank{r}.pid").read_text().split()[0]) for r in (0, 1)]
    assert history[-1]["loss"] < history[0]["loss"]
    m = evaluate_run(run, load_prepared(run))
    assert m["ndcg@10"] > m["popularity"]["ndcg@10"] * 1.2, m
    assert (run.recommender / "model.safetensors").exists()
    assert (run.recommender / "items.parquet").exists()


def test_prepare_is_reused_when_config_unchanged(tmp_path):
    cfg = synthetic_cfg()
    run = RunDir(tmp_path / "run")
    prepare(run, cfg)
    mtime = (run.data / "interactions.parquet").stat().st_mtime_ns
    prepare(run, cfg)
    assert (run.data / "interactions.parquet").stat().st_mtime_ns == mtime
    cfg.split.seed = 7
    prepare(run, cfg)
    assert (run.data / "interactions.parquet").stat().st_mtime_ns != mtime
