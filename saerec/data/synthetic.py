"""Synthetic interaction logs with planted attributes.

Items belong to latent genres (one primary, sometimes a second); users prefer a few genres
(sparse Dirichlet) and drift towards another mix over their history; consecutive picks tend to
stay in the current genre (a sequential signal a transformer can learn, beyond popularity).
Generation is vectorised over users and chunked, so millions of interactions stream to Parquet
with bounded memory (``write_parquet``). ``paper_shape`` holds the ML-20M-shaped generator
(``data.synthetic_preset: ml-20m``); both stream through the same ``write_parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .paper_shape import PaperShapeConfig, paper_chunks
from .schema import Dataset

GENRE_NAMES = ("Action", "Children", "Fantasy", "Sci-Fi", "Western", "Drama", "Comedy", "Horror",
               "Romance", "Thriller", "Crime", "War", "Musical", "Mystery", "Animation", "Documentary")


@dataclass
class SyntheticConfig:
    users: int = 2000
    items: int = 500
    genres: int = 8
    min_len: int = 20
    max_len: int = 120
    stickiness: float = 0.7      # chance the next item stays in the current genre
    concentration: float = 0.3   # Dirichlet alpha of user genre preferences (small: few genres)
    second_genre: float = 0.3    # chance an item also carries a second genre
    seed: int = 0


def make_items(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    names = [GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"Genre{g}" for g in range(cfg.genres)]
    primary = rng.integers(0, cfg.genres, size=cfg.items)
    second = np.where(rng.random(cfg.items) < cfg.second_genre, rng.integers(0, cfg.genres, size=cfg.items), -1)
    genres = [[names[p]] + ([names[s]] if s >= 0 and s != p else []) for p, s in zip(primary, second)]
    years = rng.integers(1950, 2020, size=cfg.items)
    items = pd.DataFrame({
        "item_id": np.arange(1, cfg.items + 1, dtype="int64"),
        "title": [f"Item {i} ({y})" for i, y in zip(range(1, cfg.items + 1), years)],
        "genres": genres,
        "year": pd.array(years, dtype="Int64"),
    })
    return items, primary


def _chunk(cfg: SyntheticConfig, rng: np.random.Generator, primary: np.ndarray, user_ids: np.ndarray,
           t0: np.ndarray) -> pd.DataFrame:
    n, G = len(user_ids), cfg.genres
    by_genre = [np.flatnonzero(primary == g) for g in range(G)]
    # Zipf-like popularity inside each genre
    weights = [1.0 / np.arange(1, len(ix) + 1) ** 0.8 for ix in by_genre]
    cdfs = [np.cumsum(w) / w.sum() for w in weights]
    pref0 = rng.dirichlet([cfg.concentration] * G, size=n)
    pref1 = rng.dirichlet([cfg.concentration] * G, size=n)
    lengths = rng.integers(cfg.min_len, cfg.max_len + 1, size=n)
    L = int(lengths.max())
    genre = np.array([rng.choice(G, p=p) for p in pref0])
    out_items = np.empty((n, L), dtype=np.int64)
    for t in range(L):
        frac = (t / np.maximum(lengths - 1, 1))[:, None]
        pref = (1 - frac) * pref0 + frac * pref1
        switch = rng.random(n) >= cfg.stickiness
        u = rng.random(n)[:, None]
        new = (u > np.cumsum(pref, axis=1)).sum(axis=1).clip(0, G - 1)
        genre = np.where(switch, new, genre)
        pick = np.empty(n, dtype=np.int64)
        r = rng.random(n)
        for g in range(G):
            m = genre == g
            if m.any():
                pos = np.searchsorted(cdfs[g], r[m]).clip(0, len(by_genre[g]) - 1)
                pick[m] = by_genre[g][pos]
        out_items[:, t] = pick + 1
    mask = np.arange(L)[None, :] < lengths[:, None]
    gaps = rng.integers(60, 86_400, size=(n, L)).cumsum(axis=1)
    df = pd.DataFrame({
        "user_id": np.repeat(user_ids, L)[mask.ravel()],
        "item_id": out_items[mask],
        "timestamp": (t0[:, None] + gaps)[mask],
        "rating": np.float32(5.0),
    })
    # a user rates an item once, as in MovieLens: keep the first occurrence
    return df.drop_duplicates(["user_id", "item_id"], keep="first")


def _chunks(cfg: SyntheticConfig | PaperShapeConfig, chunk_users: int = 50_000):
    if isinstance(cfg, PaperShapeConfig):
        return paper_chunks(cfg)
    rng = np.random.default_rng(cfg.seed)
    items, primary = make_items(cfg, rng)
    start = 1_000_000_000
    span = 3 * 365 * 86_400
    # users join over time: later user ids join later, so "most recent new users" is well defined
    t0_all = np.sort(rng.integers(start, start + span, size=cfg.users))
    def gen():
        for lo in range(0, cfg.users, chunk_users):
            ids = np.arange(lo + 1, min(lo + chunk_users, cfg.users) + 1, dtype=np.int64)
            yield _chunk(cfg, rng, primary, ids, t0_all[lo: lo + len(ids)])
    return items, gen()


def generate(cfg: SyntheticConfig | PaperShapeConfig | None = None) -> Dataset:
    """An in-memory synthetic dataset (small sizes: tests, examples)."""
    cfg = cfg or SyntheticConfig()
    items, chunks = _chunks(cfg)
    ints = pd.concat(list(chunks), ignore_index=True)
    return Dataset("synthetic", ints, items, source=f"synthetic:{cfg}")


def write_parquet(folder: str | Path, cfg: SyntheticConfig | PaperShapeConfig, chunk_users: int = 50_000) -> Path:
    """Stream a (possibly huge) synthetic log to the generic Parquet schema; returns the folder.
    (``chunk_users`` is the small generator's; the ML-20M-shaped one has its own in its config.)"""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items, chunks = _chunks(cfg, chunk_users)
    items_out = items.copy()
    pq.write_table(pa.Table.from_pandas(items_out, preserve_index=False), folder / "items.parquet")
    writer = None
    try:
        for df in chunks:
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(folder / "interactions.parquet", table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return folder
