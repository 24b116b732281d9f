"""The data stage's sources as chunks: the interaction log arrives a bounded number of rows at a
time, checked and filtered, so the stage never holds the whole log (:mod:`saerec.data.stream`).

- the synthetic generators: their own user chunks (``synthetic._chunks``, ``paper_shape.paper_chunks``);
- MovieLens CSV ``ratings.csv`` (ML-20M's layout): ``loaders.csv_rating_chunks``, pyarrow's
  streaming CSV reader (the one reader of that file: ``load_folder`` concatenates its chunks);
- the generic Parquet schema: its row groups in batches;
- ML-1M ``.dat`` and ML-100K: read whole (the largest is 1M rows), then cut into chunks.

Each chunk goes through ``loaders.apply_filters`` (``min_rating``, items without metadata); what
the filters drop is summed into ``Source.dropped`` as the chunks pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import RunConfig
from ..errors import DataError
from .download import resolve
from .loaders import (FORMATS, _check_header, apply_filters, csv_rating_chunks, detect_format, parquet_items,
                      read_movies_csv)
from .schema import Dataset, check_interactions, integer_column

CHUNK_ROWS = 1_000_000        # rows per chunk for the sources read whole


@dataclass
class Source:
    """A log as chunks. ``chunks`` yields (frame, progress) where progress counts ``unit`` towards
    ``total``; ``dropped`` fills up as they are consumed (loader drops + filters)."""

    name: str
    items: pd.DataFrame
    source: str
    chunks: Iterator[tuple[pd.DataFrame, float]]
    total: float | None
    unit: str
    fmt: str = ""
    dropped: dict[str, int] = field(default_factory=dict)


def open_source(cfg: RunConfig, chunk_rows: int = CHUNK_ROWS) -> Source:
    """The configured dataset (synthetic, downloaded or a local folder) as a :class:`Source`."""
    d = cfg.data
    if d.dataset == "synthetic" and not d.data_dir:
        from .paper_shape import PaperShapeConfig
        from .synthetic import SyntheticConfig, _chunks

        if d.synthetic_preset == "ml-20m":
            synth = PaperShapeConfig.ml20m(d.synthetic_scale, seed=d.synthetic_seed)
        else:
            synth = SyntheticConfig(users=max(1, round(d.synthetic_users * d.synthetic_scale)), items=d.synthetic_items,
                                    genres=d.synthetic_genres, seed=d.synthetic_seed)
        items, gen = _chunks(synth)

        def users_done():
            done = 0
            for df in gen:
                done += df["user_id"].nunique()
                yield df, done
        src = Source("synthetic", items, f"synthetic:{synth}", users_done(), synth.users, "users", "synthetic")
    else:
        src = folder_source(resolve(d.dataset, d.data_dir), chunk_rows)
    src.chunks = _filtered(src, src.chunks, d.min_rating)
    return src


def _filtered(src: Source, raw, min_rating: float | None):
    for df, done in raw:
        ds = apply_filters(Dataset(src.name, df, src.items), min_rating)
        for k, v in ds.dropped.items():
            src.dropped[k] = src.dropped.get(k, 0) + v
        yield ds.interactions, done


def folder_source(folder: str | Path, chunk_rows: int = CHUNK_ROWS) -> Source:
    folder = Path(folder)
    fmt = detect_format(folder)
    if fmt == "movielens-csv":
        ratings = folder / "ratings.csv"
        _check_header(ratings, ["userId", "movieId", "rating", "timestamp"])
        items = read_movies_csv(folder / "movies.csv")
        return Source(folder.name, items, str(folder), csv_rating_chunks(ratings), ratings.stat().st_size / 1e6, "MB", fmt)
    if fmt == "parquet":
        path = folder / "interactions.parquet"
        rows = _parquet_rows(path)
        items = parquet_items(folder, lambda: _unique_item_ids(path, chunk_rows))
        return Source(folder.name, items, str(folder), _parquet_chunks(path, chunk_rows), rows, "rows", fmt)
    ds = FORMATS[fmt][1](folder)                    # ML-1M / ML-100K: read whole, then chunked
    n = len(ds.interactions)
    chunks = ((ds.interactions.iloc[lo: lo + chunk_rows], min(lo + chunk_rows, n)) for lo in range(0, n, chunk_rows))
    return Source(ds.name, ds.items, ds.source, chunks, n, "rows", fmt, dict(ds.dropped))


def _parquet_rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _unique_item_ids(path: Path, chunk_rows: int) -> np.ndarray:
    """The log's item ids (for a folder without items.parquet), one column read in batches."""
    f = pq.ParquetFile(path, pre_buffer=False)
    if "item_id" not in f.schema_arrow.names:
        check_interactions(f.schema_arrow.empty_table().to_pandas(), str(path))     # names the missing columns
    ids, done = np.zeros(0, np.int64), 0
    for batch in f.iter_batches(batch_size=chunk_rows, columns=["item_id"]):
        col = batch.column(0).to_pandas().rename("item_id")
        ids = np.union1d(ids, integer_column(col, str(path), done).to_numpy())
        done += len(col)
    return ids


def _parquet_chunks(path: Path, chunk_rows: int):
    """The generic schema's interactions in batches; a bad row is named by its row in the file.
    (pre_buffer off: its read cache lives as long as the reader, so memory grew with the file.)"""
    done = 0
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=chunk_rows):
        df = batch.to_pandas()
        df.index = np.arange(done, done + len(df))
        yield check_interactions(df, str(path), first_row=done), done + len(df)
        done += len(df)
