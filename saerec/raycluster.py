"""Start or join Ray once per process (the embedded local default, or RAY_ADDRESS for a cluster)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("saerec")


# Serve's proxy must answer its first readiness check within 5 s, three times in a row, or Serve
# kills it and `serve.start` fails ("Proxy actor readiness check ... didn't complete in 5.0s"). A
# new proxy imports Serve, gRPC and saerec's servicer; on a loaded 2-core machine (a CI run at load
# average 60) that took longer. Local runtimes started here give it 30 s; a cluster keeps its own.
LOCAL_RUNTIME_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}


def local_runtime_env() -> None:
    """Defaults for a local runtime's processes (they inherit this process's environment)."""
    for key, value in LOCAL_RUNTIME_ENV.items():
        os.environ.setdefault(key, value)


def ensure_ray(num_cpus: int | None = None, address: str | None = None, object_store_mb: int = 512) -> None:
    import ray

    if ray.is_initialized():
        return
    # Loopback-only local clusters: token auth (default since Ray 2.59) only gets in the way of
    # `ray start --address` and friends; a cluster started elsewhere keeps its own setting.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, logging_level=logging.WARNING)
        quiet_data_progress()
        return
    # Ray starts workers at nice 15 so that drivers stay responsive; in a local runtime the workers
    # do all the work, and a niced worker yields the CPU to Ray's own helpers (a 5-epoch GPTRec
    # A/B on 2 cores: 16.3-16.9k tokens/s at nice 15, 18.5-19.9k at 0; over a whole 56-epoch run
    # the mean moved less than the run-to-run spread). `saerec serve` replicas need it most.
    os.environ.setdefault("RAY_worker_niceness", "0")
    local_runtime_env()
    # Without the dashboard, Ray Train's placement-group cleaner warns every few seconds that the
    # state API is unavailable; worker loggers at ERROR keep the console readable (our progress
    # lines are prints). SAEREC_RAY_LOG_LEVEL=INFO brings Ray's messages back.
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             object_store_memory=object_store_mb * 1024 * 1024, logging_level=logging.WARNING,
             log_to_driver=True,
             logging_config=ray.LoggingConfig(log_level=os.environ.get("SAEREC_RAY_LOG_LEVEL", "ERROR")))
    log.info("started a local Ray runtime with %s CPUs", ray.cluster_resources().get("CPU"))
    quiet_data_progress()


def quiet_data_progress() -> None:
    """Ray Data's progress bars redraw many times a second: fine on a terminal, thousands of lines
    in a log file. Off unless stderr is a terminal (``SAEREC_RAY_PROGRESS=1`` forces them on); the
    stages print their own progress lines with rate and ETA. Datasets made afterwards carry the
    setting to the processes that run them."""
    import ray.data

    on = os.environ.get("SAEREC_RAY_PROGRESS", "1" if sys.stderr.isatty() else "0") == "1"
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = on
    ctx.enable_operator_progress_bars = on


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1))


def max_node_cpus() -> float:
    """CPUs of the largest live node: one Train worker can never ask for more (it would never be placed)."""
    import ray

    return max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1.0) or 1.0


def cpus_per_worker(num_workers: int, keep_free: float = 0.0) -> float:
    """An even share of the cluster's CPUs per worker (minus ``keep_free``), capped at the largest node."""
    share = int((cluster_cpus() - keep_free) // max(num_workers, 1))
    return float(max(1, min(share, int(max_node_cpus()))))


def quiet_ray_train_logs() -> None:
    """Inside a Ray Train worker: drop Train's per-report INFO lines (one long line per epoch).

    Some Train modules name their logger by file path (``getLogger(__file__)``), so match both forms.
    ``SAEREC_RAY_LOG_LEVEL=INFO`` keeps them.
    """
    level = os.environ.get("SAEREC_RAY_LOG_LEVEL", "WARNING")
    import ray.train  # noqa: F401  (make sure Train's loggers exist)

    for name in ["ray.train", *logging.root.manager.loggerDict]:
        if name.startswith("ray.train") or "/ray/train/" in name:
            logging.getLogger(name).setLevel(level)


def note_worker_pid(folder: str | os.PathLike | None, rank: int) -> None:
    """Record a Train worker's process id and node as ``folder/rank<r>.pid`` ("pid node_id"; operators and
    the fault-injection and multi-node tests use it); rewritten by a restarted worker."""
    if folder:
        import ray

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"rank{rank}.pid"), "w") as f:
            f.write(f"{os.getpid()} {ray.get_runtime_context().get_node_id()}")


def train_storage(run, rel: str, experiment: str, resume: bool) -> tuple[str, Path]:
    """Ray Train storage for one experiment of ``run`` at ``rel``: the run's URI for a remote run (the
    workers write checkpoints there from any node), else the local folder. Cleared unless resuming
    (Train V2 silently resumes any run it finds under the same name). Returns the storage path and a
    fresh local ``pids/`` folder (where workers note their process ids)."""
    import shutil

    from .storage import clear_storage

    storage = run.ray_path(rel)
    if not resume:
        clear_storage(storage, experiment)
    local = run.root / rel
    shutil.rmtree(local / "pids", ignore_errors=True)
    local.mkdir(parents=True, exist_ok=True)
    return storage, local / "pids"
