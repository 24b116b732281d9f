"""Fault tolerance: a Ray Train worker killed (SIGKILL) mid-training makes the run resume from its
last checkpoint and finish with no lost or repeated epochs; the same for SAE training."""

import os
import signal
import threading
import time
from pathlib import Path

from saerec.config import RunConfig, apply_overrides
from saerec.data.prepare import prepare
from saerec.rundir import RunDir
from saerec.sae import SAEConfig
from saerec.sae.ray_train import train_sae
from saerec.train.ray_train import train_recommender


def kill_worker_after_first_checkpoint(storage: Path, experiment: str, result: dict, thread: threading.Thread,
                                       started: float, timeout: float = 300) -> int:
    """Wait until this run (files newer than ``started``) has reported a checkpoint, SIGKILL its rank-0
    worker, return that pid."""
    end = time.time() + timeout
    pid_file = storage / "pids" / "rank0.pid"

    def fresh(p: Path) -> bool:
        try:
            return p.stat().st_mtime >= started
        except FileNotFoundError:
            return False

    while time.time() < end and thread.is_alive():
        if fresh(pid_file) and any(fresh(p) for p in (storage / experiment).rglob("state.json")):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint to interrupt (finished: {not thread.is_alive()}, {result})")


def run_in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:       # surface the failure in the test thread
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    return t, out


def test_gptrec_training_survives_a_killed_worker(ray_session, tmp_path):
    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=600", "data.synthetic_items=150", "model.n_layers=2",
        "model.d_model=32", "model.max_len=40", "train.epochs=5", "train.patience=10", "train.batch_tokens=1024",
        "train.max_failures=1"])
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    started = time.time()
    thread, out = run_in_thread(lambda: train_recommender(run, cfg, prep))
    killed = kill_worker_after_first_checkpoint(run.recommender / "ray", "gptrec", out, thread, started)
    thread.join(600)
    assert "error" not in out, out.get("error")
    stats = out["value"]
    history = run.read_json("recommender/history.json")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]                 # none lost, none repeated
    assert stats["epochs_run"] == 5 and stats["best_val_ndcg@10"] > 0
    assert int((run.recommender / "ray" / "pids" / "rank0.pid").read_text().split()[0]) != killed   # a new worker finished it
    assert run.has("recommender/model.safetensors")


def test_sae_training_survives_a_killed_worker(own_interpreted_run):
    run, _ = own_interpreted_run
    cfg = SAEConfig(n_latents=64, epochs=6, batch_size=32, l1=0.05, dead_window=5000)
    started = time.time()
    thread, out = run_in_thread(lambda: train_sae(run.root, cfg, max_failures=1))
    killed = kill_worker_after_first_checkpoint(run.root / "sae" / "ray", "sae", out, thread, started)
    thread.join(600)
    assert "error" not in out, out.get("error")
    assert [r["epoch"] for r in out["value"]["history"]] == [1, 2, 3, 4, 5, 6]
    assert int((run.root / "sae" / "ray" / "pids" / "rank0.pid").read_text().split()[0]) != killed
