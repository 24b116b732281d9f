"""Stream users through GPTRec with Ray Data and write one block's activations as Parquet shards.

``read_parquet(RUN/data/sequences.parquet)`` -> keep one part (the SAE part for training, test for
interpretation) -> ``map_batches(ActivationActor, compute=ActorPoolStrategy)``: each actor loads the
checkpoint once -> ``write_parquet(RUN/activations/<part>/)``. Batches of users flow through with
backpressure, so memory does not grow with the number of users. Columns: ``user_id``,
``position``, ``item_id`` (the dataset's id), ``activation`` (fixed-size float32 tensor).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..config import ActivationsConfig
from ..rundir import RunDir

log = logging.getLogger("saerec.activations")


class ActivationActor:
    """Holds one GPTRec replica; maps a batch of users to their activation rows."""

    def __init__(self, recommender_dir: str, layer: str, threads: int = 1):
        import torch

        from ..model.checkpoint import load_model, model_index

        torch.set_num_threads(max(1, threads))
        self.model, _ = load_model(recommender_dir)
        self.index = model_index(recommender_dir)
        self.layer = layer

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .extract import block_activations

        seqs = [self.index.to_index(np.asarray(s)) for s in batch["items"]]
        seqs = [s[s > 0] for s in seqs]                       # items unknown to the model are skipped
        keep = [i for i, s in enumerate(seqs) if len(s)]
        rows = block_activations(self.model, batch["user_id"][keep], [seqs[i] for i in keep], self.layer)
        rows["item_id"] = self.index.to_ids(rows.pop("item"))
        return rows


def shard_names(part: str):
    """``<part>-<task>.parquet`` instead of Ray's random write UUIDs: the stage key hashes file names."""
    from ray.data.datasource import FilenameProvider

    class ShardNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"{part}-{task_index:06}.parquet"

    return ShardNames(file_format="parquet")


def extract(run: RunDir, part: str = "sae", cfg: ActivationsConfig | None = None, threads_per_actor: int = 1) -> Path:
    """Write ``RUN/activations/<part>/*.parquet``; returns the folder.

    The stream's memory is bounded whatever the number of users: Ray Data may keep at most
    ``cfg.object_store_mb`` of blocks in flight (by default it takes half the object store, so a
    long stream fills more of it than a short one), and no block exceeds ``cfg.block_mb``.
    """
    import ray
    import ray.data
    from ray.data import ExecutionResources

    from ..raycluster import ensure_ray

    cfg = cfg or ActivationsConfig()
    ensure_ray()
    out = run.stage("activations") / part
    if out.exists():
        shutil.rmtree(out)
    if run.remote:                      # the actors may run on any node: write to the run's URI
        run.remote.delete(f"activations/{part}")
    src = str(run.data / "sequences.parquet")
    ds = ray.data.read_parquet(src).select_columns(["user_id", "part", "items"])
    ds = ds.filter(lambda r: r["part"] == part)
    ds = ds.map_batches(
        ActivationActor,
        fn_constructor_kwargs={"recommender_dir": str(run.recommender), "layer": cfg.layer,
                               "threads": threads_per_actor},
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        batch_size=cfg.users_per_batch, batch_format="numpy", num_cpus=threads_per_actor,
    )
    ds.context.target_max_block_size = cfg.block_mb << 20
    # Same inputs -> same files: blocks keep their order and files are named by part and task, so
    # re-extracting an unchanged recommender leaves the content hash (and the SAE stage's key) as is.
    ds.context.execution_options.preserve_order = True
    ds.context.execution_options.resource_limits = ExecutionResources.for_limits(
        object_store_memory=cfg.object_store_mb << 20)
    ds.write_parquet(run.ray_path(f"activations/{part}"), mode="overwrite", min_rows_per_file=200_000,
                     filename_provider=shard_names(part))
    run.pull(f"activations/{part}")     # the driver's later stages read them locally
    log.info("wrote activations of %s users (%s) to %s", part, cfg.layer, out)
    return out
