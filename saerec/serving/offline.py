"""Offline batch recommendations: the gRPC service's scoring (steering, business rules) for every
user of a Parquet file, streamed through a Ray Data actor pool, written as ``user_id, rank, item_id,
score`` Parquet.

Why not the online path: a nightly job for millions of users needs no network hop per user, and
Ray Data streams the users with backpressure, so memory does not grow with their number (the
pattern of :mod:`saerec.activations.ray_extract`). The scoring is the service's own: each actor
holds a :class:`~.service.RecommenderService` and answers one request template (built by
:meth:`~.client.RecommenderClient.request`, validated by ``prepare_rules``) for each user's history
with ``for_history`` + ``ranked``, so an offline list equals the Recommend response for the same
history.

Resumable: the driver collects the stream in input order and writes every ``part_users`` users
as one part file under ``OUT.parts/`` (atomically) and records it in ``manifest.json``. A rerun with
the same run, input and request skips the users of the recorded parts (never sends them to the
model) and continues with the next part; the parts have the same boundaries, so the assembled file
is the same. ``OUT`` itself is written once, atomically, from the parts; then the parts go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path, write_parquet, write_text
from ..errors import DataError, SaerecError
from ..layout import A
from ..rundir import RunDir

log = logging.getLogger("saerec.serving")


@dataclass
class OfflineJob:
    """What ``saerec recommend`` was asked for (``users``: ``test``, ``all`` or a Parquet file with
    ``user_id`` and ``items``; ``edits``: ``TARGET=[MODE:]VALUE[@last|@all]`` texts; ``rules``:
    allow_items, deny_items, include_attributes, exclude_attributes)."""

    run: str
    out: str
    users: str = "test"
    edits: list[str] = field(default_factory=list)
    k: int = 10
    exclude_seen: bool = True
    rules: dict = field(default_factory=dict)
    actors: int = 1
    batch_users: int = 256
    part_users: int = 10_000
    threads: int = 1


class OfflineActor:
    """One replica of the service; maps a batch of users to their ranked lists (one row per user)."""

    def __init__(self, run_dir: str, request: bytes, threads: int = 1):
        import torch

        from ..v1 import recommender_pb2 as pb
        from .service import RecommenderService

        torch.set_num_threads(max(1, threads))
        self.service = RecommenderService(run_dir)
        self.base = self.service.prepare_rules(pb.RecommendRequest.FromString(request))
        self.ids = np.asarray(self.service._ids, dtype=np.int64)

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        preps = [self.service.for_history(self.base, np.asarray(h, dtype=np.int64), f"items of user {u}")
                 for u, h in zip(batch["user_id"], batch["items"])]
        ranked = self.service.ranked(preps)
        return pa.table({"user_id": pa.array(np.asarray(batch["user_id"]), pa.int64()),
                         "item_id": pa.array([self.ids[np.asarray(top[0], dtype=np.int64)] for top, _, _ in ranked],
                                             pa.list_(pa.int64())),
                         "score": pa.array([np.asarray(top[1], dtype=np.float32) for top, _, _ in ranked],
                                           pa.list_(pa.float32()))})


def source(run: RunDir, users: str) -> tuple[Path, str | None]:
    """The Parquet file of the users and the ``part`` to keep (None: every row); checks its columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if users in ("test", "all"):
        path, part = run.path(A.SEQUENCES), (None if users == "all" else "test")
        if not path.exists():
            raise DataError(f"{path} is missing; run `saerec data --run {run.root}` first")
    else:
        path, part = Path(users), None
        if not path.is_file():
            raise DataError(f"--users {users}: no such file (give test, all, or a Parquet file with user_id and items)")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a file that is not Parquet)
        raise DataError(f"--users {path}: not a readable Parquet file ({e})") from None
    uid = schema.field("user_id").type if "user_id" in schema.names else None
    items = schema.field("items").type if "items" in schema.names else None
    if uid is None or not pa.types.is_integer(uid) or items is None or not (
            pa.types.is_list(items) or pa.types.is_large_list(items)) or not pa.types.is_integer(items.value_type):
        raise DataError(f"--users {path}: needs columns user_id (integer) and items (list of integer item ids, oldest "
                        f"first); has {', '.join(f'{f.name} ({f.type})' for f in schema)}")
    return path, part


def user_order(path: Path, part: str | None) -> np.ndarray:
    """The users' ids in file order (8 bytes a user: the resume bookkeeping and the progress total)."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["user_id"], filters=[("part", "=", part)] if part else None)
    ids = t.column("user_id").to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"--users {path}: user_id has duplicates; one row per user (their whole history)")
    return ids


def _keep(batch, part: str | None, done: np.ndarray):
    """Ray Data filter: the rows of ``part`` whose user is not in a finished part."""
    import pyarrow.compute as pc

    mask = np.ones(batch.num_rows, dtype=bool)
    if part:
        mask &= pc.equal(batch.column("part"), part).to_numpy()
    if len(done):
        mask &= ~np.isin(batch.column("user_id").to_numpy(), done)
    return batch.filter(mask).select(["user_id", "items"])


def long_rows(wide) -> "object":
    """One row per user (lists) -> one row per recommendation: ``user_id, rank, item_id, score``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    items, scores = wide.column("item_id").combine_chunks(), wide.column("score").combine_chunks()
    lens = items.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    rank = np.arange(int(lens.sum())) - np.repeat(starts, lens) + 1
    return pa.table({"user_id": pa.array(np.repeat(wide.column("user_id").to_numpy(), lens), pa.int64()),
                     "rank": pa.array(rank, pa.int32()),
                     "item_id": pc.cast(items.flatten(), pa.int64()), "score": pc.cast(scores.flatten(), pa.float32())})


class Parts:
    """``OUT.parts/``: part files and ``manifest.json`` (the job's key and each finished part's users)."""

    def __init__(self, out: Path, key: str):
        self.dir = out.with_name(out.name + ".parts")
        self.file = self.dir / "manifest.json"
        m = json.loads(self.file.read_text()) if self.file.exists() else {}
        if m.get("key") != key:                 # another job (or none): start afresh
            shutil.rmtree(self.dir, ignore_errors=True)
            m = {"key": key, "parts": []}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.manifest = m

    @property
    def users_done(self) -> int:
        return sum(p["users"] for p in self.manifest["parts"])

    def add(self, wide) -> None:
        name = f"part-{len(self.manifest['parts']):05d}.parquet"
        write_parquet(long_rows(wide), self.dir / name)
        self.manifest["parts"].append({"file": name, "users": wide.num_rows})
        write_text(self.file, json.dumps(self.manifest, indent=1))

    def assemble(self, out: Path) -> int:
        """Concatenate the parts into ``out`` atomically; returns its rows."""
        import pyarrow.parquet as pq

        rows = 0
        with atomic_path(out) as tmp:
            writer = None
            for p in self.manifest["parts"]:
                t = pq.read_table(self.dir / p["file"])
                writer = writer or pq.ParquetWriter(tmp, t.schema)
                writer.write_table(t)
                rows += t.num_rows
            if writer is None:                   # no user: an empty table with the columns
                write_parquet(long_rows(_empty()), tmp)
            else:
                writer.close()
        return rows


def _empty():
    import pyarrow as pa

    return pa.table({"user_id": pa.array([], pa.int64()), "item_id": pa.array([], pa.list_(pa.int64())),
                     "score": pa.array([], pa.list_(pa.float32()))})


def request_of(job: OfflineJob):
    """The job's request template (no history): the same builder as the Python client."""
    from .client import RecommenderClient

    return RecommenderClient.request([], k=job.k, steering=job.edits, exclude_seen=job.exclude_seen, **job.rules)


def recommend_offline(job: OfflineJob, on_part: Callable[[int], None] | None = None) -> dict:
    """Run ``job``; returns its summary (users, rows, parts reused, seconds, rate). ``on_part(i)`` is
    called after part ``i`` is recorded. Bad input raises a :class:`SaerecError` before anything is written."""
    import time

    import pyarrow as pa
    import ray
    import ray.data

    from ..progress import Progress
    from ..raycluster import ensure_ray
    from .service import RecommenderService, model_version

    run, out = RunDir(job.run), Path(job.out)
    for rel, cmd in ((A.WEIGHTS, "train"), (A.SAE_WEIGHTS, "sae"), (A.FEATURES, "interpret")):
        if not run.has(rel):
            raise SaerecError(f"{run.root / rel} is missing; run `saerec {cmd} --run {job.run}` first")
    if out.suffix != ".parquet":
        raise DataError(f"--out {out}: give a .parquet path")
    path, part = source(run, job.users)
    request = request_of(job)
    RecommenderService(run).prepare_rules(request)   # every field checked here, not in an actor
    bytes_ = request.SerializeToString(deterministic=True)
    st = path.stat()
    key = hashlib.sha256(json.dumps([model_version(run), str(path.resolve()), st.st_size, st.st_mtime_ns, part,
                                     bytes_.hex(), job.part_users]).encode()).hexdigest()[:16]
    order = user_order(path, part)
    parts = Parts(out, key)
    reused, done = len(parts.manifest["parts"]), order[:parts.users_done]
    todo = len(order) - len(done)
    if todo:
        ensure_ray()
    start = time.perf_counter()                          # the job's own time, not Ray's start
    progress = Progress("recommend", todo, unit="users")
    if todo:
        ds = ray.data.read_parquet(str(path)).select_columns(["user_id", "items"] + (["part"] if part else []))
        ds = ds.map_batches(_keep, fn_kwargs={"part": part, "done": done}, batch_format="pyarrow")
        ds = ds.map_batches(OfflineActor, fn_constructor_kwargs={"run_dir": str(run.root), "request": bytes_,
                                                                 "threads": job.threads},
                            compute=ray.data.ActorPoolStrategy(size=job.actors), batch_size=job.batch_users,
                            batch_format="numpy", num_cpus=job.threads)
        ds.context.execution_options.preserve_order = True       # parts keep their boundaries on a rerun
        pending, n = [], 0

        def flush(size: int) -> None:
            nonlocal pending, n
            t = pa.concat_tables(pending)
            parts.add(t.slice(0, size))
            pending, n = ([t.slice(size)] if t.num_rows > size else []), t.num_rows - size
            if on_part:
                on_part(len(parts.manifest["parts"]) - 1)

        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            pending.append(batch)
            n += batch.num_rows
            progress.update(batch.num_rows)
            while n >= job.part_users:
                flush(job.part_users)
        if n:
            flush(n)
    rows = parts.assemble(out)
    shutil.rmtree(parts.dir)
    seconds = time.perf_counter() - start
    print(progress.line(), flush=True)
    return {"users": int(len(order)), "users_scored": int(todo), "parts_reused": reused, "rows": rows,
            "seconds": round(seconds, 3), "users_per_s": round(todo / seconds, 1) if seconds and todo else None,
            "out": str(out)}
