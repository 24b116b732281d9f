"""SAE training on Ray Train over a Ray Data stream of activation shards.

Workers read their split of ``RUN/activations/sae/*.parquet`` with ``get_dataset_shard`` (files
shuffled per epoch, then a shuffle buffer per worker), normalise with the constants computed on
the driver, and train data-parallel (DDP averages gradients; decoder projection runs after it, so
every rank holds the same weights). One checkpoint per epoch: ``sae.safetensors`` + ``cfg.json`` +
optimizer + state, so a killed worker resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..activations.store import iter_batches, to_tensor
from ..precision import compute_dtype
from ..progress import Progress, print_line
from ..train.ray_train import weights_digest, worker_start
from .base import SAEConfig, build_sae, load_sae, planned_epochs, save_sae, topk_size_warning
from .normalize import Normalizer, NormStats
from .shard_cache import ShardCache
from .trainer import make_optimizer, shuffled_batches, train_steps

log = logging.getLogger("saerec.sae")
EXPERIMENT = "sae"


def sae_worker_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from ..raycluster import quiet_ray_train_logs

    quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    from ..raycluster import note_worker_pid
    note_worker_pid(config.get("pid_dir"), rank)
    # Adam's second moments and the gradients of rarely firing latents underflow into denormals,
    # which x86 handles at a fraction of the normal speed (+12% steps/s flushed, measured)
    torch.set_flush_denormal(True)
    cfg = SAEConfig(**config["sae"])
    sae = build_sae(int(config["d_in"]), cfg)
    sae.normalizer = Normalizer.from_dict(config["normalizer"])
    # same init on every rank: the driver's normalised sample (b_dec, then the encoder scale)
    sae.init_from_sample(torch.tensor(config["init_sample"], dtype=torch.float32))
    opt = make_optimizer(sae)
    state = {"epoch": 0, "history": [], "seconds": 0.0, "rows": 0}
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        from safetensors.torch import load_file
        with ckpt.as_directory() as d:
            sae.load_state_dict(load_file(os.path.join(d, "sae.safetensors")))
            opt.load_state_dict(torch.load(os.path.join(d, "optimizer.pt"), weights_only=True))
            state = json.loads(Path(d, "state.json").read_text())
        if rank == 0:
            print_line(f"[saerec] SAE resumed after epoch {state['epoch']}")
    model = ray.train.torch.prepare_model(sae)
    core = getattr(model, "module", model)
    start = worker_start(rank, ctx.get_world_size(), state, core.state_dict())
    shard = ray.train.get_dataset_shard("train")
    norm = core.normalizer
    # (one epoch left: nothing would replay the recording)
    cache = ShardCache() if config["cache_shard"] and cfg.epochs - state["epoch"] > 1 else None
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            streams = cache is None or not cache.complete           # this epoch reads through Ray Data
            torch.set_num_threads(max(1, int(config["stream_threads" if streams else "threads"])))
            prog = Progress(f"SAE epoch {epoch + 1}", config.get("rows_per_worker"), unit="act", every_s=30,
                            printer=print_line if rank == 0 else (lambda m: None))
            batches = minibatches(shard, cfg, epoch, norm, cache)
            t = time.perf_counter()
            parts = train_steps(core, opt, batches, prog, forward=model,
                                dtype=compute_dtype(config.get("precision", "auto"), core.W_dec.device))
            seconds = time.perf_counter() - t
            state["seconds"] += seconds
            state["rows"] += parts["rows"]
            state["epoch"] = epoch + 1
            row = {"epoch": epoch + 1, **parts, "activations_per_second": parts["rows"] / max(seconds, 1e-9),
                   "dead_fraction_window": float(core.dead_mask().float().mean()),
                   **start, "weights": weights_digest(core.state_dict())}
            state["history"].append(row)
            if rank == 0:
                print_line(f"[saerec] SAE epoch {epoch + 1}/{cfg.epochs} | loss {parts['loss']:.4f} | "
                     + " | ".join(f"{k} {v:.4f}" for k, v in parts.items() if k not in ("loss", "rows"))
                     + f" | {row['activations_per_second']:,.0f} act/s/worker")
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = None
                if rank == 0:
                    save_sae(tmp, core)
                    torch.save(opt.state_dict(), os.path.join(tmp, "optimizer.pt"))
                    Path(tmp, "state.json").write_text(json.dumps(state))
                    checkpoint = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(row, checkpoint=checkpoint)
    finally:
        if cache is not None:
            cache.close()


def minibatches(shard, cfg: SAEConfig, epoch: int, norm: Normalizer, cache: ShardCache | None = None,
                per_block: int = 64):
    """Training steps from a Ray Data shard: blocks of ``batch_size * per_block`` rows (files in a new
    order every epoch), mixed in a shuffle buffer of ``cfg.shuffle_buffer`` rows
    (:func:`shuffled_batches`). With a ``cache``, epochs after the first replay the rows this worker
    received from node-local disk instead of reading them through Ray Data again. Asking Ray Data for
    256-row batches directly costs more per batch than the SAE step itself."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)

    def stream():
        return (b["activation"] for b in shard.iter_torch_batches(batch_size=cfg.batch_size * per_block,
                                                                   dtypes=torch.float32))

    raw = stream() if cache is None else cache.blocks(stream, g)
    yield from shuffled_batches((norm(b) for b in raw), cfg.batch_size, cfg.shuffle_buffer, g)


def activation_dataset(folder: str | Path):
    """The activation shards as a Ray Data stream (``folder``: a local path or a URI)."""
    import ray.data

    return ray.data.read_parquet(str(folder), shuffle="files").select_columns(["activation"])


def norm_and_init(folder: Path, mode: str, sample_rows: int = 20_000) -> tuple[Normalizer, np.ndarray, int, int]:
    """One streamed pass: normalisation constants, a normalised sample for the init, row count, d."""
    stats, sample, n, d = NormStats(mode), [], 0, None
    for rb in iter_batches(folder):
        x = to_tensor(rb.column(0))
        stats.update(x)
        n += x.shape[0]
        d = x.shape[1]
        if sum(len(s) for s in sample) < sample_rows:
            sample.append(x[: sample_rows])
    norm = stats.finish()
    return norm, norm(torch.cat(sample)[:sample_rows]).numpy(), n, d


def train_sae(run_root, cfg: SAEConfig, num_workers: int = 1, threads: int | None = None,
              resume: bool = False, max_failures: int = 0, cache_shard: bool = True, precision: str = "auto") -> dict:
    """Train an SAE on ``RUN/activations/sae`` with Ray Train (``run_root``: a RunDir or its path);
    writes ``RUN/sae/sae.safetensors``+``cfg.json``."""
    from ..rundir import RunDir

    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..raycluster import cpus_per_worker, ensure_ray, train_storage

    ensure_ray()
    run = run_root if isinstance(run_root, RunDir) else RunDir(run_root)
    acts = run.root / "activations" / "sae"
    norm, init_sample, n_rows, d = norm_and_init(acts, cfg.normalization)
    if (warning := topk_size_warning(cfg, d)):
        log.warning(warning)
    cfg = replace(cfg, epochs=planned_epochs(cfg, n_rows))      # the step budget, as whole epochs
    # Train reserves its workers' CPUs; Ray Data's read tasks need what is left, so keep one logical
    # CPU free for them (else the read hangs, see the Ray notes).
    reserve = cpus_per_worker(num_workers, keep_free=1)
    threads = threads or max(1, (os.cpu_count() or 1) // num_workers)
    # While an epoch streams, the read tasks and the split coordinator run on the CPUs kept free, so
    # torch gets only the worker's reservation: one more OpenMP thread than free cores leaves the
    # step's threads waiting on each other at every parallel op whenever one is descheduled. On 2
    # cores the 20M-interaction log's activations streamed into the TopK step at 4.3k act/s with 2
    # threads and 15.7k with 1 (in memory: 47k and 40k; benchmarks/sae_stream_threads.py). Epochs
    # replayed from the shard cache (no Ray Data running) use every thread.
    stream_threads = max(1, min(threads, int(reserve)))
    storage, pid_dir = train_storage(run, "sae/ray", EXPERIMENT, resume)
    trainer = TorchTrainer(
        sae_worker_loop,
        train_loop_config={"sae": asdict(cfg), "d_in": d, "normalizer": norm.to_dict(), "init_sample": init_sample,
                           "threads": threads, "stream_threads": stream_threads, "rows_per_worker": n_rows // num_workers,
                           "pid_dir": str(pid_dir), "cache_shard": cache_shard, "precision": precision},
        scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": reserve}),
        datasets={"train": activation_dataset(run.ray_path("activations/sae"))},
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(name=EXPERIMENT, storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    result = trainer.fit()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as dd:
        sae, _ = load_sae(dd)
        state = json.loads(Path(dd, "state.json").read_text())
    return {"sae": sae, "history": state["history"], "activations": n_rows, "d_in": d,
            "train_activations_per_second": state["rows"] / max(state["seconds"], 1e-9) * num_workers}
