"""The in-memory form every loader returns, and the generic Parquet schema.

Generic Parquet folder (any log, e.g. Music4all):

- ``interactions.parquet`` (required): ``user_id`` (int), ``item_id`` (int), ``timestamp`` (int or
  timestamp; seconds), optional ``rating`` (float). One row per interaction.
- ``items.parquet`` (optional): ``item_id`` plus any attribute columns. Boolean columns are binary
  attributes; a ``genres`` column of ``list<string>`` (or a ``|``-separated string) becomes genre
  multi-hot; ``title`` (string) and ``year`` (int) are used when present.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


@dataclass
class Dataset:
    """Interactions (user_id, item_id, timestamp[, rating]) and an items table (item_id, title, genres, ...)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str = ""
    dropped: dict[str, int] = field(default_factory=dict)   # filter name -> rows dropped

    def summary(self) -> dict:
        ints = self.interactions
        return {
            "dataset": self.name,
            "source": self.source,
            "interactions": int(len(ints)),
            "users": int(ints["user_id"].nunique()),
            "items": int(ints["item_id"].nunique()),
            "dropped": dict(self.dropped),
        }


def check_interactions(df: pd.DataFrame, where: str, first_row: int = 0) -> pd.DataFrame:
    """Ensure the interaction columns exist with integer types; return a normalised copy.
    ``first_row``: the file row of ``df``'s first row (a chunk of a streamed file), for errors."""
    missing = [c for c in INTERACTION_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} "
                        f"(required: {', '.join(INTERACTION_COLUMNS)}; found: {', '.join(map(str, df.columns))})")
    out = pd.DataFrame({c: df[c] for c in INTERACTION_COLUMNS})
    if "rating" in df.columns:
        out["rating"] = df["rating"].astype("float32")
    if pd.api.types.is_datetime64_any_dtype(out["timestamp"]):
        out["timestamp"] = out["timestamp"].astype("datetime64[s]").astype("int64")
    for c in INTERACTION_COLUMNS:
        out[c] = integer_column(out[c], where, first_row)
    return out.reset_index(drop=True)


def integer_column(col: pd.Series, where: str, first_row: int = 0) -> pd.Series:
    """``col`` as int64 (whole floats pass: a Parquet writer may have widened ints), else a DataError
    naming the first null row or the column's type."""
    if col.isna().any():
        row = first_row + int(np.flatnonzero(col.isna().to_numpy())[0])
        raise DataError(f"{where}: row {row}: null {col.name}")
    whole_floats = pd.api.types.is_float_dtype(col) and np.all(np.mod(col.to_numpy(), 1) == 0)
    if not (pd.api.types.is_integer_dtype(col) or whole_floats):
        raise DataError(f"{where}: column {col.name} must be integer, got {col.dtype}")
    return col.astype("int64")
