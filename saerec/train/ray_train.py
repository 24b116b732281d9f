"""Recommender training (any ``model.arch``) on Ray Train: data-parallel workers (gloo on CPU, NCCL on GPU), a checkpoint
every epoch, early stopping on validation NDCG@10, resume from the last checkpoint after a failure.

The driver writes the training windows to a flat file as it reads the rec part in bounded batches
(:mod:`saerec.train.windows`) and puts the validation set into the object store; each worker
builds the same length-bucketed batch list per epoch from the windows' lengths, takes its share
(equal counts, so DDP steps stay in lockstep) and reads those windows from the file. Validation is
sharded across workers and summed with all_reduce, so every worker takes the same early-stopping
decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..atomic import write_parquet
from ..config import ModelConfig, RunConfig, TrainConfig
from ..data.prepare import Prepared
from ..data.sequences import eval_pairs, offsets_of
from ..errors import RunError
from ..eval.metrics import ranking_metrics
from ..eval.ranking import recommend
from ..model.checkpoint import WEIGHTS, catalogue_frame, load_model, save_model
from ..model.interface import SequentialRecommender
from ..model.registry import build_model, objective
from ..precision import compute_dtype
from ..progress import Progress, fmt_seconds, print_line
from ..rundir import A, RunDir
from .batching import bucket_batches, shard_batches
from .budget import batch_tokens_for
from .inputs import TrainInput, read_train_input
from .loop import train_epoch, unwrap
from .objective import patience_for
from .windows import open_windows, write_windows

log = logging.getLogger("saerec.train")

EXPERIMENT = "gptrec"


def _pack(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
    return {"flat": flat, "offsets": offsets_of(lens)}


def _unpack(p: dict[str, np.ndarray]) -> list[np.ndarray]:
    o = p["offsets"]
    return [p["flat"][o[i]: o[i + 1]] for i in range(len(o) - 1)]


def _allreduce(values: list[float], op: str = "sum") -> list[float]:
    """Sum (or ``op="min"``) across workers; NCCL reduces device tensors only, so on GPU workers the
    values travel through the worker's device."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.cpu().tolist()


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex digits) of a state dict: names, dtypes, shapes and bytes. Each history row
    carries the digest of the weights its epoch's checkpoint saved and of the weights its worker
    started from, so a resumed run shows that it loaded the checkpoint: a restart from scratch
    starts from other weights."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def worker_start(rank: int, world: int, state: dict, weights: Mapping[str, torch.Tensor]) -> dict:
    """What a Train worker records in each history row about how it started: every rank's process id
    in rank order (a one-hot all_reduce, so all ranks must call it), the epoch it resumed after
    (0: a fresh start) and the digest of the weights it started from."""
    pids = _allreduce([float(os.getpid()) if r == rank else 0.0 for r in range(world)])
    return {"pids": [int(p) for p in pids], "start_epoch": state["epoch"], "start_weights": weights_digest(weights)}


def _validate(core: SequentialRecommender, inputs: list[np.ndarray], targets: np.ndarray, rank: int, world: int,
              device, batch_size: int) -> dict[str, float]:
    mine = np.arange(rank, len(inputs), world)
    if len(mine):
        topk = recommend(core, [inputs[i] for i in mine], k=10, batch_size=batch_size, device=device)
        m = ranking_metrics(topk, targets[mine], core.n_items)
        sums = [m["ndcg@10"] * len(mine), m["hit_rate@10"] * len(mine), float(len(mine))]
    else:
        sums = [0.0, 0.0, 0.0]
    ndcg, hr, n = _allreduce(sums)
    return {"val_ndcg@10": ndcg / max(n, 1), "val_hit_rate@10": hr / max(n, 1)}


def worker_loop(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray
    import ray.train
    import ray.train.torch

    from ..raycluster import note_worker_pid, quiet_ray_train_logs

    quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    note_worker_pid(config.get("pid_dir"), rank)
    local_world = max(ctx.get_local_world_size(), 1)
    torch.set_num_threads(max(1, min(int(config["cpus_per_worker"]), (os.cpu_count() or 1) // local_world)))
    data = ray.get(config["data_ref"])
    windows, val_inputs = open_windows(config["windows"]), _unpack(data["val_inputs"])
    try:
        _train(config, data, windows, val_inputs, rank, world)
    finally:
        windows.close()


def _train(config: dict, data: dict, windows, val_inputs: list[np.ndarray], rank: int, world: int) -> None:
    """The epochs of one worker: ``windows`` (a WindowFile) batched by length, validation on ``val_inputs``."""
    import ray.train
    import ray.train.torch

    mc, tc = ModelConfig(**config["model"]), TrainConfig(**config["train"])
    val_targets, lengths = data["val_targets"], windows.lengths() - 1
    log_q = torch.from_numpy(data["log_q"]) if data.get("log_q") is not None else None

    torch.manual_seed(tc.seed)
    core_model = build_model(mc, int(data["n_items"]))
    obj = objective(mc, core_model)
    patience = patience_for(tc, obj)
    model = ray.train.torch.prepare_model(core_model)
    device = ray.train.torch.get_device()
    dtype = compute_dtype(tc.precision, device)
    log_q = log_q.to(device) if log_q is not None else None
    core = unwrap(model)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    state = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
             "seconds_to_best": None, "train_seconds": 0.0, "train_tokens": 0}
    best_weights = None

    from safetensors.torch import load_file
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:   # resume after a failure or an interrupted job
        with ckpt.as_directory() as d:
            core.load_state_dict(load_file(os.path.join(d, WEIGHTS), device=str(device)))
            opt.load_state_dict(torch.load(os.path.join(d, "optimizer.pt"), weights_only=True))
            best_weights = load_file(os.path.join(d, "best.safetensors"))
            state = json.loads(Path(d, "state.json").read_text())
        if rank == 0:
            print_line(f"[saerec] resumed from checkpoint after epoch {state['epoch']}")

    if "batch_tokens" not in state:       # a fresh run picks its budget; a resumed one keeps its batches
        mine = batch_tokens_for(tc, mc, core.n_items, device)
        state["batch_tokens"] = int(_allreduce([float(mine)], op="min")[0])   # every worker batches alike
    start = worker_start(rank, world, state, core.state_dict())
    say = print_line if rank == 0 else (lambda m: None)
    say(f"[saerec] {state['batch_tokens']:,} tokens per batch (train.batch_tokens: {tc.batch_tokens}, {device.type})")
    if state["bad_epochs"] >= patience:   # resumed after an early stop: done; the driver reads the checkpoint
        say(f"[saerec] already stopped early after epoch {state['epoch']} (best @ {state['best_epoch']})")
        return
    epoch_times: list[float] = []
    for epoch in range(state["epoch"], tc.epochs):
        rng = np.random.default_rng([tc.seed, epoch])
        batches = shard_batches(bucket_batches(lengths, state["batch_tokens"], rng), rank, world)
        prog = Progress(f"epoch {epoch + 1}", sum(int(lengths[b].sum()) for b in batches), unit="tok",
                        every_s=30, printer=say)
        t_epoch = time.perf_counter()
        stats = train_epoch(model, opt, windows, batches, tc, device, log_q, prog, obj, dtype)
        tokens, seconds = _allreduce([float(stats.tokens), 0.0])[0], stats.seconds
        # validation ranks in fp32 whatever the training precision: bf16 scores reorder top-10 lists
        # (docs/benchmarks.md, "Mixed precision"), and early stopping must compare like with like
        val = _validate(core, val_inputs, val_targets, rank, world, device, tc.eval_batch_size)
        epoch_times.append(time.perf_counter() - t_epoch)
        state["train_seconds"] += seconds
        state["train_tokens"] += int(tokens)
        improved = val["val_ndcg@10"] > state["best_ndcg"]
        if improved:
            state.update(best_ndcg=val["val_ndcg@10"], best_epoch=epoch + 1, bad_epochs=0,
                         seconds_to_best=time.time() - config["t_start"])
            best_weights = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        row = {"epoch": epoch + 1, "loss": stats.loss, "tokens_per_second": tokens / max(seconds, 1e-9),
               "padding_fraction": 1 - stats.tokens / max(stats.padded, 1), "batch_tokens": state["batch_tokens"], **val,
               **start, "weights": weights_digest(core.state_dict())}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        stop = state["bad_epochs"] >= patience or epoch + 1 >= tc.epochs
        left = min(tc.epochs - epoch - 1, patience - state["bad_epochs"])
        say(f"[saerec] epoch {epoch + 1}/{tc.epochs} | loss {stats.loss:.4f} | {row['tokens_per_second']:,.0f} tok/s"
            f" | val ndcg@10 {val['val_ndcg@10']:.4f} (best {state['best_ndcg']:.4f} @ {state['best_epoch']})"
            f" | {epoch_times[-1]:.1f}s/epoch | ETA {fmt_seconds(left * np.median(epoch_times))} if no further"
            f" improvement (max {fmt_seconds((tc.epochs - epoch - 1) * np.median(epoch_times))})"
            + (" | early stop" if stop and epoch + 1 < tc.epochs else ""))
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                from safetensors.torch import save_file
                save_model(tmp, core, {"epoch": epoch + 1}, cfg=mc)
                save_file(best_weights, os.path.join(tmp, "best.safetensors"))
                torch.save(opt.state_dict(), os.path.join(tmp, "optimizer.pt"))
                Path(tmp, "state.json").write_text(json.dumps(state))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({**row, "best_val_ndcg@10": state["best_ndcg"], "stop": stop}, checkpoint=checkpoint)
        if stop:
            break


def train_recommender(run: RunDir, cfg: RunConfig, data: TrainInput | Prepared | None = None, resume: bool = False,
                      t_start: float | None = None) -> dict:
    """Train the recommender (``model.arch``) with Ray Train and write ``RUN/recommender/`` (best weights + history).

    ``data``: None reads it from ``RUN/data`` in bounded batches (:func:`~saerec.train.inputs.read_train_input`);
    a ``Prepared`` the caller already holds is converted in memory."""
    t_start = t_start or time.time()
    if cfg.train.num_workers < 1:
        raise RunError("train.num_workers must be >= 1")
    data = read_train_input(run) if data is None else TrainInput.of(data) if isinstance(data, Prepared) else data
    run.recommender.mkdir(parents=True, exist_ok=True)
    for stale in run.recommender.glob(".windows-*"):       # left by a driver that was killed
        shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=".windows-", dir=run.recommender))   # removed when training ends
    try:
        return _fit(run, cfg, data, folder, resume, t_start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if run.remote:
            run.remote.delete(f"recommender/{folder.name}")


def _fit(run: RunDir, cfg: RunConfig, data: TrainInput, folder: Path, resume: bool, t_start: float) -> dict:
    """``train_recommender`` with the training windows written to ``folder`` (:mod:`saerec.train.windows`)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..raycluster import cpus_per_worker, ensure_ray, train_storage

    mc, tc = cfg.model, cfg.train
    t = time.time()
    offsets, counts = write_windows(data.rec_batches(), folder, mc.max_len, tc.windows, data.index.size)
    log.info("training windows: %d (%d tokens) written in %.1fs", len(offsets) - 1, offsets[-1], time.time() - t)
    windows = str(folder)
    if run.remote:                              # workers on other nodes read it from the run's URI
        run.push(f"recommender/{folder.name}")
        windows = run.ray_path(f"recommender/{folder.name}")
    val_users = data.val.users
    val_inputs, val_targets = eval_pairs(data.val, mc.max_len)
    log_q = None
    if tc.loss == "sampled" and tc.negatives == "inbatch":
        counts = counts[1:].astype(np.float64) + 1.0
        log_q = np.log(counts / counts.sum()).astype(np.float32)
    ensure_ray()
    data_ref = ray.put({"val_inputs": _pack(val_inputs), "val_targets": val_targets,
                        "n_items": data.index.size, "log_q": log_q})
    use_gpu = tc.use_gpu if tc.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    cpus = tc.cpus_per_worker or cpus_per_worker(tc.num_workers)
    storage, pid_dir = train_storage(run, "recommender/ray", EXPERIMENT, resume)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"model": asdict(mc), "train": asdict(tc), "data_ref": data_ref, "windows": windows,
                           "cpus_per_worker": cpus, "t_start": t_start, "pid_dir": str(pid_dir)},
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RayRunConfig(name=EXPERIMENT, storage_path=storage,
                                checkpoint_config=CheckpointConfig(num_to_keep=2),
                                failure_config=FailureConfig(max_failures=tc.max_failures),
                                # Train's own per-report INFO lines drown the progress lines
                                logging_config=ray.LoggingConfig(
                                    log_level=os.environ.get("SAEREC_RAY_LOG_LEVEL", "WARNING"))),
    )
    log.info("training %s: %d windows, %d validation users, %d workers x %.1f CPU%s", mc.arch, len(offsets) - 1,
             len(val_users), tc.num_workers, cpus, " + GPU" if use_gpu else "")
    result = trainer.fit()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as d:
        state = json.loads(Path(d, "state.json").read_text())
        out = run.recommender
        best, _ = load_model(d, weights_name="best.safetensors")   # the checkpoint's config.json + best weights
        save_model(out, best, {"best_epoch": state["best_epoch"], "dataset": data.meta.get("dataset")}, cfg=mc)
    write_parquet(catalogue_frame(data.items, data.index), run.path(A.CATALOGUE))
    run.write_json(A.REC_SPLIT, data.meta)
    run.write_json(A.REC_HISTORY, state["history"])
    tps = state["train_tokens"] / max(state["train_seconds"], 1e-9)
    return {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "best_val_ndcg@10": state["best_ndcg"], "train_tokens_per_second": tps,
            "seconds_to_best_checkpoint": state["seconds_to_best"], "train_seconds": state["train_seconds"],
            "num_workers": tc.num_workers, "use_gpu": bool(use_gpu), "batch_tokens": state.get("batch_tokens")}

