"""Fault tolerance: a Ray Train worker killed (SIGKILL) mid-training, or ``saerec train``'s driver killed
and the command rerun with ``--resume``, continues from the last checkpoint with no lost or repeated
epochs. Each history row records the worker's pid, the epoch it started after and digests of the
weights it started from and saved, so the tests see the checkpoint loaded (a restart from scratch
fails them); the same for SAE training."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from safetensors.torch import load_file

from saerec.config import RunConfig, apply_overrides
from saerec.data.prepare import prepare
from saerec.rundir import RunDir
from saerec.sae import SAEConfig
from saerec.sae.base import planned_epochs
from saerec.sae.ray_train import train_sae
from saerec.train.ray_train import train_recommender, weights_digest


def wait_for_first_checkpoint(storage: Path, experiment: str, started: float, alive, timeout: float = 300) -> int:
    """Wait until this run (files newer than ``started``) has a registered checkpoint (Train's checkpoint
    manager snapshot names one: a checkpoint folder alone may not be registered yet, and then a
    restart rightly starts over); return its rank-0 worker's pid. ``alive()``: whether the run is
    still going (else there is nothing to interrupt)."""
    end = time.time() + timeout
    pid_file, snapshot = storage / "pids" / "rank0.pid", storage / experiment / "checkpoint_manager_snapshot.json"

    def fresh(p: Path) -> bool:
        try:
            return p.stat().st_mtime >= started
        except FileNotFoundError:
            return False

    def registered() -> bool:
        try:
            return json.loads(snapshot.read_text()).get("latest_checkpoint_result") is not None
        except (FileNotFoundError, json.JSONDecodeError):          # not there yet, or being written
            return False

    while time.time() < end and alive():
        if fresh(pid_file) and fresh(snapshot) and registered():
            return int(pid_file.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint to interrupt (still running: {alive()})")


def wait_until_gone(pid: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} outlived its killed driver")


def assert_resumed_from_checkpoint(history: list[dict], killed: int) -> None:
    """``history`` is a run whose rank-0 worker ``killed`` died mid-training: epochs 1..n once each; the
    rows that worker trained come first, from a fresh start; every later row comes from a new worker
    that started after the killed one's last checkpointed epoch, from the weights that checkpoint
    saved. A restart from scratch, or one that restores the state but not the weights, fails here."""
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1)), history   # none lost or repeated
    before = [r for r in history if r["pids"][0] == killed]
    after = history[len(before):]
    assert before and after and before == history[: len(before)], [(r["epoch"], r["pids"]) for r in history]
    assert {r["start_epoch"] for r in before} == {0}
    last = before[-1]
    assert {(r["pids"][0], r["start_epoch"], r["start_weights"]) for r in after} == \
        {(after[0]["pids"][0], last["epoch"], last["weights"])}, (last, after)
    assert before[0]["start_weights"] != last["weights"]                # training moved the weights


def assert_digests_are_the_checkpoints(storage: Path, weights_file: str, history: list[dict]) -> None:
    """The recorded digests are of the saved weights: the newest checkpoint's file hashes to the last row's."""
    newest = max(storage.rglob("state.json"), key=lambda p: json.loads(p.read_text())["epoch"])
    assert weights_digest(load_file(str(newest.parent / weights_file))) == history[-1]["weights"]


def rank0_pid(storage: Path) -> int:
    return int((storage / "pids" / "rank0.pid").read_text().split()[0])


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
        "data.dataset=synthetic", "data.synthetic_users=400", "data.synthetic_items=120", "model.n_layers=2",
        "model.d_model=32", "model.max_len=40", "train.epochs=3", "train.patience=10", "train.batch_tokens=1024",
        "train.max_failures=1"])
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    started = time.time()
    thread, out = run_in_thread(lambda: train_recommender(run, cfg, prep))
    storage = run.recommender / "ray"
    killed = wait_for_first_checkpoint(storage, "gptrec", started, thread.is_alive)
    os.kill(killed, signal.SIGKILL)
    thread.join(600)
    assert "error" not in out, out.get("error")
    stats = out["value"]
    history = run.read_json("recommender/history.json")
    assert_resumed_from_checkpoint(history, killed)
    assert_digests_are_the_checkpoints(storage / "gptrec", "model.safetensors", history)
    assert len(history) == stats["epochs_run"] == 3 and stats["best_val_ndcg@10"] > 0
    assert rank0_pid(storage) == history[-1]["pids"][0]                   # the new worker finished it
    assert run.has("recommender/model.safetensors")


def test_sae_training_survives_a_killed_worker(own_interpreted_run):
    run, _ = own_interpreted_run
    rows = pq.ParquetDataset(run.root / "activations" / "sae").read(columns=["user_id"]).num_rows
    # the budget in steps (no sae.epochs): train_sae turns it into 3 whole epochs over these rows
    cfg = SAEConfig(kind="relu", n_latents=64, steps=(2 * rows) // 32 + 1, batch_size=32, l1=0.05, dead_window=5000)
    assert cfg.epochs is None and planned_epochs(cfg, rows) == 3
    started = time.time()
    thread, out = run_in_thread(lambda: train_sae(run.root, cfg, max_failures=1))
    storage = run.root / "sae" / "ray"
    killed = wait_for_first_checkpoint(storage, "sae", started, thread.is_alive)
    os.kill(killed, signal.SIGKILL)
    thread.join(600)
    assert "error" not in out, out.get("error")
    history = out["value"]["history"]
    assert_resumed_from_checkpoint(history, killed)
    assert len(history) == 3
    assert_digests_are_the_checkpoints(storage / "sae", "sae.safetensors", history)
    assert rank0_pid(storage) == history[-1]["pids"][0]


def test_train_resumes_after_a_killed_driver(ray_session, tmp_path):
    """``saerec train`` SIGKILLed after its first checkpoint (Ray ends its Train run with it), then rerun
    with ``--resume``: the rerun continues from that checkpoint instead of starting over."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "saerec", "train", "--run", str(run), "--dataset", "synthetic", "--epochs", "3",
           "--set", "data.synthetic_users=300", "--set", "data.synthetic_items=100", "--set", "model.n_layers=1",
           "--set", "model.d_model=16", "--set", "model.max_len=30", "--set", "train.batch_tokens=512",
           "--set", "train.patience=10"]
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    started = time.time()
    with open(tmp_path / "killed.log", "w") as log:
        driver = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        killed = wait_for_first_checkpoint(run / "recommender" / "ray", "gptrec", started,
                                           lambda: driver.poll() is None)
    finally:
        driver.kill()
        driver.wait()
    wait_until_gone(killed)
    assert not (run / "recommender" / "metrics.json").exists()           # it was interrupted
    # resumed with another budget (as on another device under batch_tokens: auto): the checkpoint's is kept
    done = subprocess.run(cmd + ["--resume", "--set", "train.batch_tokens=1024"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    history = json.loads((run / "recommender" / "history.json").read_text())
    assert_resumed_from_checkpoint(history, killed)
    assert {r["batch_tokens"] for r in history} == {512}, [r["batch_tokens"] for r in history]
    assert len(history) == 3 and (run / "recommender" / "metrics.json").exists()


def test_resume_after_early_stop_trains_nothing_more(ray_session, tmp_path):
    """A run that already stopped early, resumed: its saved patience count says it is done, so no epoch
    runs and the recommender written is the stopped run's best. (A learning rate too small to move fp32
    weights makes validation flat, so patience 1 stops it after epoch 2 of 6 every time.)"""
    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=300", "data.synthetic_items=100", "model.n_layers=1",
        "model.d_model=16", "model.max_len=30", "train.epochs=6", "train.patience=1", "train.lr=1e-12",
        "train.batch_tokens=512"])
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    first = train_recommender(run, cfg, prep)
    history = run.read_json("recommender/history.json")
    assert first["epochs_run"] == len(history) == 2 and first["best_epoch"] == 1, (first, history)
    weights = weights_digest(load_file(str(run.recommender / "model.safetensors")))
    again = train_recommender(run, cfg, prep, resume=True)
    assert run.read_json("recommender/history.json") == history               # no epoch trained or lost
    assert again["epochs_run"] == 2 and again["best_epoch"] == 1, again
    assert weights_digest(load_file(str(run.recommender / "model.safetensors"))) == weights
