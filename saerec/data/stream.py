"""The data stage with bounded memory: the log is never held whole, whatever its size.

1. One pass over the source in chunks (:mod:`saerec.data.chunks`): each chunk is filtered, counted
   into the split's O(users) summary (:meth:`Splitter.observe`) and spilled, sorted by user, to a
   Parquet run file in ``RUN/data/.spill-*/`` (removed at the end, on failure too).
2. The global decisions from the summaries: the cut time ``T``, then user-id ranges (buckets) of
   about ``bucket_rows`` interactions each (a user is never cut). A bucket is read back from every
   run file with a range filter; the runs are sorted by user, so Parquet's row-group statistics
   skip most of each file.
3. Every bucket is scanned (train items and users: the cold-item filter and the seeded 60/40
   permutation need them all), then split (:meth:`Splitter.apply`) and appended to
   ``interactions.parquet`` and ``sequences.parquet`` with a ``ParquetWriter`` each. Buckets are
   ascending user ranges, so both files stay sorted by user (``Sequences.select`` relies on it).
   Both are written under temporary names and renamed when complete (:mod:`saerec.atomic`).

Peak memory is one chunk or one bucket plus the summaries (users and items), not the log.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..atomic import atomic_path, write_parquet
from ..heap import release_memory
from ..config import RunConfig
from ..progress import Progress
from ..rundir import A, RunDir
from .attributes import build_attributes
from .chunks import CHUNK_ROWS, open_source
from .split import Splitter

log = logging.getLogger("saerec.data")

BUCKET_ROWS = 1_000_000       # interactions per bucket (a bucket is the most the split holds at once)
SPILL_ROW_GROUP = 65_536      # rows per row group of a spill file: the granularity of a bucket's read
SEQ_ROW_GROUP = 4_096         # users per row group of sequences.parquet (Ray Data reads it by row group)


@dataclass
class StreamReport:
    """What the stream held at most at once (the bounded-memory claim, checked by the tests)."""

    chunks: int = 0
    max_chunk_rows: int = 0
    buckets: int = 0
    max_bucket_rows: int = 0      # rows read back for one bucket (all its users' interactions)


def bucket_ranges(rows_per_user: pd.Series, bucket_rows: int) -> list[tuple[int, int]]:
    """Inclusive user-id ranges, ascending, of about ``bucket_rows`` interactions each: a user goes
    to the bucket where its first row falls (so a bucket holds < bucket_rows + one user's rows)."""
    n = rows_per_user.sort_index()
    before = np.cumsum(n.to_numpy()) - n.to_numpy()
    b = before // max(int(bucket_rows), 1)
    users = n.index.to_numpy()
    edges = np.flatnonzero(np.diff(b)) + 1
    starts, ends = np.concatenate([[0], edges]), np.concatenate([edges, [len(users)]]) - 1
    return [(int(users[s]), int(users[e])) for s, e in zip(starts, ends)] if len(users) else []


def sequences_table(out: pd.DataFrame) -> pa.Table:
    """One row per user (``user_id``, ``part``, ``items``: item ids in time order) from rows sorted
    by user and time. Later stages stream this file (a user never spans two rows)."""
    users = out["user_id"].to_numpy()
    uniq, starts = np.unique(users, return_index=True)
    offsets = np.append(starts, len(users)).astype(np.int32)
    parts = out["part"].astype(str).to_numpy()
    return pa.table({
        "user_id": pa.array(uniq, pa.int64()),
        "part": pa.array(parts[starts], pa.string()),
        "items": pa.ListArray.from_arrays(pa.array(offsets), pa.array(out["item_id"].to_numpy(), pa.int64())),
    })


def stream_data(run: RunDir, cfg: RunConfig, config_hash: str, bucket_rows: int = BUCKET_ROWS,
                chunk_rows: int = CHUNK_ROWS) -> tuple[dict, StreamReport]:
    """Load, split and write ``RUN/data`` (interactions, sequences, items, split.json); returns the
    split meta (what split.json holds) and what the stream held at most."""
    src = open_source(cfg, chunk_rows)
    sp, report = Splitter(cfg.split), StreamReport()
    run.data.mkdir(parents=True, exist_ok=True)
    spill = run.data / f".spill-{uuid.uuid4().hex[:8]}"
    spill.mkdir()
    try:
        files = _spill(src, sp, spill, report)
        sp.cut()
        ranges = bucket_ranges(sp.users["n"], bucket_rows)
        # pre_buffer off: its read cache lives as long as the reader and would grow with the log
        fmt = pads.ParquetFileFormat(default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=False))

        def bucket(lo: int, hi: int, columns=None) -> pd.DataFrame:
            uid, runs = pads.field("user_id"), pads.dataset([str(f) for f in files], format=fmt)
            df = runs.to_table(filter=(uid >= lo) & (uid <= hi), columns=columns).to_pandas()
            report.max_bucket_rows = max(report.max_bucket_rows, len(df))
            return df

        report.buckets = len(ranges)
        for lo, hi in ranges:
            sp.scan(bucket(lo, hi, ["user_id", "item_id", "timestamp"]))
            release_memory()
        sp.decide()
        prog = Progress(f"data: split ({len(ranges)} buckets)", sp.rows, "rows", every_s=10, printer=log.info)
        with atomic_path(run.path(A.INTERACTIONS)) as t_ints, atomic_path(run.path(A.SEQUENCES)) as t_seqs:
            writers: dict = {}                              # temporary path -> its ParquetWriter
            try:
                for lo, hi in ranges:
                    rows = bucket(lo, hi)
                    out = sp.apply(rows).drop(columns="_row")
                    for path, table, kw in ((t_ints, pa.Table.from_pandas(out, preserve_index=False), {}),
                                            (t_seqs, sequences_table(out), {"row_group_size": SEQ_ROW_GROUP})):
                        if path not in writers:
                            writers[path] = pq.ParquetWriter(path, table.schema)
                        writers[path].write_table(table, **kw)
                    prog.update(len(rows))
                    del rows, out
                    release_memory()
                T, val_users, stats = sp.finish()
            finally:
                for w in writers.values():
                    w.close()
            run.path(A.SPLIT).unlink(missing_ok=True)      # never a new file beside an old split.json
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    items = build_attributes(src.items, None, cfg.data.popularity_buckets, train_counts=sp.rec_counts)
    write_parquet(items, run.path(A.ITEMS))
    meta = {"config_hash": config_hash, "dataset": src.name, "source": src.source, "loader_dropped": src.dropped,
            **stats, "cut_time": int(T), "val_users": [int(u) for u in val_users]}
    run.write_json(A.SPLIT, meta)
    log.info("data: %d chunks (at most %d rows), %d buckets (at most %d rows)", report.chunks,
             report.max_chunk_rows, report.buckets, report.max_bucket_rows)
    return meta, report


def _spill(src, sp: Splitter, spill, report: StreamReport) -> list:
    """The pass over the source: summaries, and each chunk sorted by user to a run file."""
    prog = Progress(f"data: reading {src.name}", src.total, src.unit, every_s=10, printer=log.info)
    files, items, offset = [], np.zeros(0, np.int64), 0
    for df, done in src.chunks:
        prog.update(done - prog.done)
        if df.empty:
            continue
        df = df.assign(_row=np.arange(offset, offset + len(df), dtype=np.int64))
        offset += len(df)
        sp.observe(df)
        items = np.union1d(items, df["item_id"].unique())
        path = spill / f"run-{len(files):05d}.parquet"
        pq.write_table(pa.Table.from_pandas(df.sort_values("user_id", kind="stable"), preserve_index=False),
                       path, row_group_size=SPILL_ROW_GROUP)
        files.append(path)
        report.chunks += 1
        report.max_chunk_rows = max(report.max_chunk_rows, len(df))
        del df
        release_memory()
    n_users = 0 if sp.users is None else len(sp.users)
    log.info("loaded %s (%s): %s interactions, %s users, %s items; dropped %s", src.name, src.fmt,
             f"{sp.rows:,}", f"{n_users:,}", f"{len(items):,}", src.dropped or "nothing")
    return files
