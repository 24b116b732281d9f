"""Loaders for GroupLens MovieLens folders and the generic Parquet schema.

Every loader returns a :class:`~saerec.data.schema.Dataset` with interactions
``(user_id, item_id, timestamp, rating)`` and items ``(item_id, title, genres, year)``.
Parsing takes a fast columnar path (pyarrow); when that fails, a line-by-line pass finds
the first bad line so the error names the file and the line.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import DataError
from .schema import Dataset, check_interactions, integer_column

log = logging.getLogger("saerec.data")

# ML-1M says "Children's", ML-20M "Children": one name so attributes mean the same everywhere.
GENRE_ALIASES = {"Children's": "Children"}
NO_GENRES = {"(no genres listed)", "unknown", ""}
_YEAR_RE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")

RATING_FIELDS = ("user_id", "item_id", "rating", "timestamp")
CSV_BLOCK = 32 << 20          # bytes per streamed ratings.csv block: about 1M ML-20M rating lines


def parse_year(title: str) -> int | None:
    """Release year from a MovieLens title such as ``Toy Story (1995)``; None if absent."""
    m = _YEAR_RE.search(title or "")
    return int(m.group(1)) if m else None


def normalise_genres(names) -> list[str]:
    out = []
    for g in names:
        g = g.strip()
        if g in NO_GENRES:
            continue
        out.append(GENRE_ALIASES.get(g, g))
    return out


def _items_frame(ids, titles, genres, where: str) -> pd.DataFrame:
    df = pd.DataFrame({"item_id": np.asarray(ids, dtype="int64"), "title": list(titles), "genres": list(genres)})
    df["year"] = pd.array([parse_year(t) for t in df["title"]], dtype="Int64")
    _check_unique(df["item_id"], where)
    return df


def _check_unique(ids: pd.Series, where: str) -> None:
    """One row per item: a repeated id would make its attributes ambiguous."""
    dup = ids.duplicated()
    if dup.any():
        raise DataError(f"{where}: duplicate item_id {int(ids[dup].iloc[0])}")


# --------------------------------------------------------------------------- line diagnosis
def _diagnose(path: Path, sep: str, fields: tuple[str, ...], numeric: dict[str, type], encoding: str,
              header: bool) -> DataError:
    """Find the first line that breaks the format and describe it (slow path, only on failure).
    Undecodable bytes show as U+FFFD in the quoted line rather than failing the diagnosis."""
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if header and lineno == 1:
                continue
            if not line.strip():
                continue   # blank lines carry no data (the fast path skips them too)
            parts = line.split(sep)
            if len(parts) != len(fields):
                if len(parts) == 1:
                    return DataError(f"{path}:{lineno}: expected fields separated by {sep!r} "
                                     f"({sep.join(fields)}), got {line[:80]!r}")
                return DataError(f"{path}:{lineno}: expected {len(fields)} fields ({sep.join(fields)}), "
                                 f"got {len(parts)}: {line[:80]!r}")
            for name, value in zip(fields, parts):
                kind = numeric.get(name)
                if kind is None:
                    continue
                try:
                    kind(value)
                except ValueError:
                    return DataError(f"{path}:{lineno}: field {name} must be {kind.__name__}, got {value!r}")
    return DataError(f"{path}: could not be parsed")


def _read_table(path: Path, sep: str, fields: tuple[str, ...], numeric: dict[str, type],
                encoding: str = "utf-8", header: bool = False) -> pd.DataFrame:
    """Read a delimited file into typed columns; on any failure raise a DataError naming the line."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    types = {n: (pa.int64() if k is int else pa.float64()) for n, k in numeric.items()}
    raw = path.read_bytes()
    if encoding != "utf-8":
        raw = raw.decode(encoding).encode("utf-8")
    if len(sep) > 1:
        if b"\t" in raw:
            raise _diagnose(path, sep, fields, numeric, encoding, header)
        raw = raw.replace(sep.encode(), b"\t")
        delim = "\t"
    else:
        delim = sep
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=list(fields), skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter=delim, quote_char='"' if delim == "," else False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        raise _diagnose(path, sep, fields, numeric, encoding, header) from None
    df = table.to_pandas()
    for name in numeric:
        if df[name].isna().any():   # an empty numeric field parses as null
            raise _diagnose(path, sep, fields, numeric, encoding, header)
    return df


def _check_header(path: Path, expected: list[str]) -> None:
    # utf-8-sig: spreadsheet programs save CSV with a byte-order mark, which is not part of "userId"
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline().rstrip("\r\n")
    got = [c.strip() for c in first.split(",")]
    if got[: len(expected)] != expected:
        missing = [c for c in expected if c not in got]
        raise DataError(f"{path}:1: header must start with {','.join(expected)}"
                        + (f" (missing: {', '.join(missing)})" if missing else f", got {first[:80]!r}"))


def _ratings(df: pd.DataFrame, where: str) -> pd.DataFrame:
    return check_interactions(df, where)


def _split_lines(path: Path, sep: str, n_fields: int, layout: str, encoding: str = "latin-1"):
    """Yield (line number, fields) of a small metadata file, checking the field count of each line."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with open(path, encoding=encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != n_fields:
                raise DataError(f"{path}:{lineno}: expected {n_fields} {sep!r}-separated fields "
                                f"({layout}), got {len(parts)}: {line[:80]!r}")
            yield lineno, parts


# --------------------------------------------------------------------------- formats
def load_ml1m(folder: Path) -> Dataset:
    """MovieLens-1M (and ML-10M) ``::`` layout: ratings.dat, movies.dat (latin-1)."""
    ratings_path, movies_path = folder / "ratings.dat", folder / "movies.dat"
    df = _read_table(ratings_path, "::", RATING_FIELDS,
                     {"user_id": int, "item_id": int, "rating": float, "timestamp": int}, encoding="latin-1")
    ids, titles, genres = [], [], []
    for lineno, parts in _split_lines(movies_path, "::", 3, "MovieID::Title::Genres"):
        try:
            ids.append(int(parts[0]))
        except ValueError:
            raise DataError(f"{movies_path}:{lineno}: MovieID must be int, got {parts[0]!r}") from None
        titles.append(parts[1])
        genres.append(normalise_genres(parts[2].split("|")))
    return Dataset(folder.name, _ratings(df, str(ratings_path)), _items_frame(ids, titles, genres, str(movies_path)),
                   str(folder))


def load_movielens_csv(folder: Path) -> Dataset:
    """MovieLens-20M / ml-latest(-small) CSV layout: ratings.csv, movies.csv (UTF-8, quoted titles)."""
    ratings_path, movies_path = folder / "ratings.csv", folder / "movies.csv"
    _check_header(ratings_path, ["userId", "movieId", "rating", "timestamp"])
    chunks = [df for df, _ in csv_rating_chunks(ratings_path)]
    df = pd.concat(chunks, ignore_index=True) if chunks else \
        check_interactions(pd.DataFrame({c: pd.Series(dtype="int64") for c in RATING_FIELDS}), str(ratings_path))
    return Dataset(folder.name, df, read_movies_csv(movies_path), str(folder))


def csv_rating_chunks(path: Path):
    """A MovieLens ``ratings.csv`` (header checked by the caller) as checked interaction frames of
    ``CSV_BLOCK`` bytes each, with the byte position reached (MB, for progress). Any parse failure or
    empty numeric field raises the bad line's one-line error (:func:`_diagnose`), as a whole-file
    read does: the streamed data stage and :func:`load_folder` share this reader."""
    numeric = {"user_id": int, "item_id": int, "rating": float, "timestamp": int}
    types = {n: (pa.int64() if k is int else pa.float64()) for n, k in numeric.items()}
    failures = (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError)
    with pa.OSFile(str(path)) as fh:
        try:
            reader = pacsv.open_csv(
                fh, read_options=pacsv.ReadOptions(column_names=list(RATING_FIELDS), skip_rows=1, block_size=CSV_BLOCK),
                parse_options=pacsv.ParseOptions(delimiter=",", quote_char='"'),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
        except failures:
            raise _diagnose(path, ",", RATING_FIELDS, numeric, "utf-8", True) from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except failures:
                raise _diagnose(path, ",", RATING_FIELDS, numeric, "utf-8", True) from None
            df = batch.to_pandas()
            if any(df[name].isna().any() for name in numeric):   # an empty numeric field parses as null
                raise _diagnose(path, ",", RATING_FIELDS, numeric, "utf-8", True)
            yield _ratings(df, str(path)), fh.tell() / 1e6


def read_movies_csv(path: Path) -> pd.DataFrame:
    """The items table of a MovieLens CSV ``movies.csv`` (movieId,title,genres; quoted titles)."""
    _check_header(path, ["movieId", "title", "genres"])
    try:
        mv = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()})).to_pandas()
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: {str(e).splitlines()[0]}") from None
    genres = [normalise_genres(str(g).split("|")) for g in mv["genres"].fillna("")]
    return _items_frame(mv["movieId"], mv["title"].fillna(""), genres, str(path))


def load_ml100k(folder: Path) -> Dataset:
    """MovieLens-100K: u.data (tab separated), u.item (``|``, latin-1, 19 genre flags), u.genre."""
    data_path, item_path = folder / "u.data", folder / "u.item"
    df = _read_table(data_path, "\t", RATING_FIELDS,
                     {"user_id": int, "item_id": int, "rating": float, "timestamp": int})
    genre_names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                   "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                   "Thriller", "War", "Western"]
    genre_path = folder / "u.genre"
    if genre_path.exists():
        rows = []
        for lineno, (name, number) in _split_lines(genre_path, "|", 2, "genre|number"):
            if not number.isdigit():
                raise DataError(f"{genre_path}:{lineno}: genre number must be an integer, got {number!r}")
            rows.append((int(number), name))
        genre_names = [name for _, name in sorted(rows)]
    ids, titles, genres = [], [], []
    for lineno, parts in _split_lines(item_path, "|", 5 + len(genre_names), "id|title|release|video|url|genre flags"):
        try:
            ids.append(int(parts[0]))
            flags = [int(x) for x in parts[5:]]
        except ValueError:
            raise DataError(f"{item_path}:{lineno}: item id and genre flags must be integers") from None
        title = parts[1]
        if parse_year(title) is None and parts[2][-4:].isdigit():
            title = f"{title} ({parts[2][-4:]})"
        titles.append(title)
        genres.append(normalise_genres(n for n, f in zip(genre_names, flags) if f))
    return Dataset(folder.name, _ratings(df, str(data_path)), _items_frame(ids, titles, genres, str(item_path)),
                   str(folder))


def load_parquet(folder: Path) -> Dataset:
    """The generic schema (see :mod:`saerec.data.schema`)."""
    path = folder / "interactions.parquet"
    interactions = check_interactions(_read_parquet(path), str(path))
    return Dataset(folder.name, interactions, parquet_items(folder, lambda: interactions["item_id"].to_numpy()),
                   str(folder))


def parquet_items(folder: Path, item_ids: Callable[[], np.ndarray]) -> pd.DataFrame:
    """The generic schema's items: ``items.parquet``, else one bare row per id that ``item_ids()``
    returns (the log's items; a callable so that a streamed reader counts them only when needed)."""
    items_path = folder / "items.parquet"
    if items_path.exists():
        items = _read_parquet(items_path)
        if "item_id" not in items.columns:
            raise DataError(f"{items_path}: missing column item_id")
        items = items.copy()
        items["item_id"] = integer_column(items["item_id"], str(items_path))
        _check_unique(items["item_id"], str(items_path))
        if "title" not in items.columns:
            items["title"] = items["item_id"].astype(str)
        if "genres" in items.columns:
            items["genres"] = [_genre_list(g, items_path) for g in items["genres"]]
        else:
            items["genres"] = [[] for _ in range(len(items))]
        if "year" not in items.columns:
            items["year"] = pd.array([parse_year(t) for t in items["title"]], dtype="Int64")
        return items.reset_index(drop=True)
    ids = np.unique(item_ids())
    return _items_frame(ids, [str(i) for i in ids], [[] for _ in ids], str(folder / "interactions.parquet"))


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _genre_list(g, where: Path) -> list[str]:
    """An items.parquet ``genres`` cell: a list of names, a ``|``-separated string, or null."""
    if g is None or (isinstance(g, float) and np.isnan(g)):
        return []
    if isinstance(g, str):
        return normalise_genres(g.split("|"))
    if isinstance(g, (list, tuple, np.ndarray)) and all(isinstance(x, str) for x in g):
        return normalise_genres(g)
    raise DataError(f"{where}: genres must be a list of strings or a '|'-separated string, got {g!r}")


FORMATS: dict[str, tuple[tuple[str, ...], Callable[[Path], Dataset]]] = {
    "parquet": (("interactions.parquet",), load_parquet),
    "movielens-1m": (("ratings.dat", "movies.dat"), load_ml1m),
    "movielens-csv": (("ratings.csv", "movies.csv"), load_movielens_csv),
    "movielens-100k": (("u.data", "u.item"), load_ml100k),
}


def detect_format(folder: Path) -> str:
    """Name the layout of a folder from the files it holds."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    for name, (files, _) in FORMATS.items():
        if all((folder / f).exists() for f in files):
            return name
    expected = "; ".join(" + ".join(files) for files, _ in FORMATS.values())
    present = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise DataError(f"{folder}: unrecognised dataset layout (expected one of: {expected}; found: {present})")


def load_folder(folder: str | Path, min_rating: float | None = None) -> Dataset:
    """Load any supported folder; apply the documented filters and log what they dropped."""
    folder = Path(folder)
    fmt = detect_format(folder)
    ds = FORMATS[fmt][1](folder)
    ds = apply_filters(ds, min_rating)
    log.info("loaded %s (%s): %s interactions, %s users, %s items; dropped %s", ds.name, fmt,
             f"{len(ds.interactions):,}", f"{ds.interactions['user_id'].nunique():,}",
             f"{ds.interactions['item_id'].nunique():,}", ds.dropped or "nothing")
    return ds


def apply_filters(ds: Dataset, min_rating: float | None = None) -> Dataset:
    """The only filters that drop interactions: ratings below ``min_rating``, items without metadata."""
    ints = ds.interactions
    dropped = dict(ds.dropped)
    if min_rating is not None:
        if "rating" not in ints.columns:
            raise DataError(f"{ds.name}: min_rating set but the log has no rating column")
        keep = ints["rating"] >= min_rating
        dropped["rating_below_min"] = int((~keep).sum())
        ints = ints[keep]
    known = ints["item_id"].isin(ds.items["item_id"])
    if not known.all():
        dropped["item_without_metadata"] = int((~known).sum())
        ints = ints[known]
    return Dataset(ds.name, ints.reset_index(drop=True), ds.items, ds.source, dropped)
