"""Item attributes as one table: the thing interpretation and steering correlate features with.

Columns: ``item_id``, ``title``, ``genres`` (``|``-joined, for display), ``year``, ``decade`` and one
boolean column per binary attribute. Genre columns use the plain genre name (``Sci-Fi``); other
groups are ``group:value`` (``decade:1990s``, ``popularity:high``). Later stages take *any* boolean
column, so a Parquet items table with its own boolean columns (mood, language, ...) just works.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

POPULARITY_LEVELS = ("low", "mid", "high")
BASE_COLUMNS = ("item_id", "title", "genres", "year", "decade")


def build_attributes(items: pd.DataFrame, train_interactions: pd.DataFrame | None = None,
                     popularity_buckets: int = 3, train_counts: pd.Series | None = None) -> pd.DataFrame:
    """Attribute table for ``items``; popularity is counted on ``train_interactions`` only (no test leakage),
    or given as ``train_counts`` (item_id -> interactions; the streamed data stage counts them on its pass)."""
    out = pd.DataFrame({"item_id": items["item_id"].astype("int64").to_numpy()})
    out["title"] = items["title"].astype(str).to_numpy()
    genres = list(items["genres"])
    out["genres"] = ["|".join(g) for g in genres]
    year = pd.array(items["year"], dtype="Int64") if "year" in items else pd.array([None] * len(out), dtype="Int64")
    out["year"] = year
    decade = (year // 10) * 10
    out["decade"] = [f"{int(d)}s" if pd.notna(d) else "" for d in decade]
    cols: dict[str, np.ndarray] = {}
    names = sorted({g for gs in genres for g in gs})
    index = {g: i for i, g in enumerate(names)}
    mh = np.zeros((len(out), len(names)), dtype=bool)
    for row, gs in enumerate(genres):
        for g in gs:
            mh[row, index[g]] = True
    for g, i in index.items():
        cols[g] = mh[:, i]
    for d in sorted(x for x in set(out["decade"]) if x):
        cols[f"decade:{d}"] = (out["decade"] == d).to_numpy()
    # boolean columns the items table brought with it (generic Parquet schema)
    for c in items.columns:
        if c not in BASE_COLUMNS and pd.api.types.is_bool_dtype(items[c]) and c not in cols:
            cols[c] = items[c].to_numpy(dtype=bool)
    if train_counts is None and train_interactions is not None:
        train_counts = train_interactions["item_id"].value_counts()
    if train_counts is not None and popularity_buckets > 0:
        n = out["item_id"].map(train_counts).fillna(0).to_numpy()
        levels = POPULARITY_LEVELS if popularity_buckets == 3 else tuple(f"q{i + 1}" for i in range(popularity_buckets))
        # equal-size buckets over items ranked by train count (rank breaks ties deterministically)
        rank = pd.Series(n).rank(method="first").to_numpy() - 1
        bucket = np.minimum((rank * popularity_buckets / max(len(n), 1)).astype(int), popularity_buckets - 1)
        for b, name in enumerate(levels):
            cols[f"popularity:{name}"] = bucket == b
        out["train_count"] = n.astype("int64")
    return pd.concat([out, pd.DataFrame(cols)], axis=1)


def attribute_columns(table: pd.DataFrame) -> list[str]:
    """The binary attribute columns of an attribute table."""
    return [c for c in table.columns if pd.api.types.is_bool_dtype(table[c])]


def genre_columns(table: pd.DataFrame) -> list[str]:
    """Binary columns that are genres (no ``group:`` prefix)."""
    return [c for c in attribute_columns(table) if ":" not in c]
