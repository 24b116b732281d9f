"""Stream users through GPTRec with Ray Data and write one block's activations as Parquet shards.

``read_parquet(RUN/data/sequences.parquet)`` -> keep one part (the SAE part for training, test for
interpretation) -> ``map_batches(ActivationActor, compute=ActorPoolStrategy)``: each actor loads the
checkpoint once -> the driver writes the batches, in order, to ``RUN/activations/<part>/``. Batches
of users flow through with backpressure, so memory does not grow with the number of users. Columns: ``user_id``,
``position``, ``item_id`` (the dataset's id), ``activation`` (fixed-size float32 tensor).
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import numpy as np

from ..config import ActivationsConfig
from ..rundir import A, RunDir

log = logging.getLogger("saerec.activations")


class ActivationActor:
    """Holds one GPTRec replica; maps a batch of users to their activation rows."""

    def __init__(self, recommender_dir: str, layer: str, threads: int = 1):
        import torch

        from ..heap import every
        from ..model.checkpoint import load_model, model_index

        torch.set_num_threads(max(1, threads))
        self.model, _ = load_model(recommender_dir)
        self.index = model_index(recommender_dir)
        self.layer = layer
        self.trim = every(8)          # padded batches vary in length: the heap would grow with their number

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .extract import block_activations

        seqs = [self.index.to_index(np.asarray(s)) for s in batch["items"]]
        seqs = [s[s > 0] for s in seqs]                       # items unknown to the model are skipped
        keep = [i for i, s in enumerate(seqs) if len(s)]
        rows = block_activations(self.model, batch["user_id"][keep], [seqs[i] for i in keep], self.layer)
        rows["item_id"] = self.index.to_ids(rows.pop("item"))
        self.trim()
        return rows


ROWS_PER_SHARD = 200_000


def write_in_order(batches, out: Path, part: str, rows_per_shard: int = ROWS_PER_SHARD) -> int:
    """Write Arrow batches, in the order given, to ``out/<part>-<n>.parquet`` of ``rows_per_shard`` rows.

    The driver writes, not Ray's ``write_parquet``: Ray's writer bundles blocks for a file in the
    order they arrive, and about one write in six put a later block first (measured on Ray 2.60 with
    ``preserve_order``), which changed the shards' bytes and so the SAE stage's key.

    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> d = Path(tempfile.mkdtemp())
    >>> write_in_order((pa.table({"x": list(range(i, i + 3))}) for i in (0, 3, 6)), d, "t", rows_per_shard=4)
    9
    >>> [(f.name, pq.read_table(f)["x"].to_pylist()) for f in sorted(d.iterdir())]
    [('t-000000.parquet', [0, 1, 2, 3]), ('t-000001.parquet', [4, 5, 6, 7]), ('t-000002.parquet', [8])]
    """
    import pyarrow.parquet as pq

    from ..heap import release_memory

    out.mkdir(parents=True, exist_ok=True)
    writer, in_shard, shards, total = None, 0, 0, 0
    for t in batches:
        while t.num_rows:
            if writer is None:
                writer = pq.ParquetWriter(out / f"{part}-{shards:06}.parquet", t.schema)
                shards += 1
            take = min(t.num_rows, rows_per_shard - in_shard)
            writer.write_table(t.slice(0, take))
            in_shard += take
            total += take
            t = t.slice(take)
            if in_shard == rows_per_shard:
                writer.close()
                writer, in_shard = None, 0
                release_memory()
    if writer is not None:
        writer.close()
    return total


def extract(run: RunDir, part: str = "sae", cfg: ActivationsConfig | None = None, threads_per_actor: int = 1) -> Path:
    """Write ``RUN/activations/<part>/*.parquet``; returns the folder.

    The stream's memory is bounded whatever the number of users: Ray Data may keep at most
    ``cfg.object_store_mb`` of blocks in flight (by default it takes half the object store, so a
    long stream fills more of it than a short one), and no block exceeds ``cfg.block_mb``.
    """
    import ray
    import ray.data
    from ray.data import DataContext, ExecutionResources

    from ..progress import Progress
    from ..raycluster import ensure_ray

    cfg = cfg or ActivationsConfig()
    ensure_ray()
    out = run.stage("activations") / part
    if out.exists():
        shutil.rmtree(out)
    if run.remote:                      # the actors may run on any node: write to the run's URI
        run.remote.delete(f"activations/{part}")
    src = str(run.data / "sequences.parquet")
    # Same inputs -> same files: blocks keep their order (preserve_order) and the driver writes them
    # in that order, so re-extracting an unchanged recommender leaves the content hash (and the SAE
    # stage's key) as is. A Dataset snapshots the process's DataContext when it is created, and the
    # Parquet reader plans its reads from that snapshot: the options are set before the read.
    ctx = DataContext.get_current()
    saved = ctx.execution_options, ctx.target_max_block_size
    ctx.execution_options = copy.deepcopy(saved[0])
    ctx.execution_options.preserve_order = True
    ctx.target_max_block_size = cfg.block_mb << 20
    ctx.execution_options.resource_limits = ExecutionResources.for_limits(
        object_store_memory=cfg.object_store_mb << 20)
    try:
        ds = ray.data.read_parquet(src).select_columns(["user_id", "part", "items"])
        ds = ds.filter(lambda r: r["part"] == part)
        ds = ds.map_batches(
            ActivationActor,
            fn_constructor_kwargs={"recommender_dir": str(run.recommender), "layer": cfg.layer,
                                   "threads": threads_per_actor},
            compute=ray.data.ActorPoolStrategy(size=cfg.actors),
            batch_size=cfg.users_per_batch, batch_format="numpy", num_cpus=threads_per_actor,
        )
    finally:
        ctx.execution_options, ctx.target_max_block_size = saved     # other datasets keep theirs
    # the split recorded each part's interactions: the progress total (one row per position)
    prog = Progress(f"extract {part}", run.read_json(A.SPLIT).get(f"{part}_interactions"), unit="act")

    def counted(batches):
        for b in batches:
            prog.update(b.num_rows)
            yield b

    rows = write_in_order(counted(ds.iter_batches(batch_size=None, batch_format="pyarrow")), out, part)
    print(prog.line(), flush=True)
    run.push(f"activations/{part}")     # a remote run's SAE workers read the shards from its URI
    log.info("wrote %d activation rows of %s users (%s) to %s", rows, part, cfg.layer, out)
    return out
