import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import data_folder
from saerec.config import SplitConfig
from saerec.data.attributes import attribute_columns, build_attributes, genre_columns
from saerec.data.loaders import FORMATS, detect_format, load_folder, parse_year, read_movies_csv
from saerec.data.sequences import ItemIndex, build_sequences, eval_pairs, eval_points
from saerec.data.split import new_users_cut, split
from saerec.data.synthetic import SyntheticConfig, generate, write_parquet
from saerec.errors import DataError, DatasetNotFound


# ----------------------------------------------------------------- loaders on the real files
@pytest.mark.parametrize("name, fmt, n", [
    ("ml-1m-users-1-2999", "movielens-1m", 487_650),
    ("ml-latest-small", "movielens-csv", 100_836),
    ("ml-100k", "movielens-100k", 100_000),
])
def test_real_folders_load(name, fmt, n):
    folder = data_folder(name)
    assert detect_format(folder) == fmt
    ds = load_folder(folder)
    assert len(ds.interactions) == n
    assert set(ds.interactions["item_id"]) <= set(ds.items["item_id"])
    assert ds.interactions.dtypes["timestamp"] == np.int64
    attrs = build_attributes(ds.items, ds.interactions)
    genres = genre_columns(attrs)
    assert "Sci-Fi" in genres and "Children" in genres and "Children's" not in genres
    assert any(c.startswith("decade:") for c in attribute_columns(attrs))
    toy = attrs[attrs["title"].str.startswith("Toy Story (1995)")].iloc[0]
    assert toy["year"] == 1995 and toy["decade"] == "1990s" and toy["Animation"] and not toy["Horror"]


def test_ml20m_movies_csv_parses_with_saerecs_reader():
    """ML-20M's ratings are not here (too large), but its movies.csv (CRLF, quoted titles) is: the
    reader the ML-20M loader uses must read all of it."""
    items = read_movies_csv(data_folder("ml-20m") / "movies.csv")
    assert len(items) == 27_278 and items["item_id"].is_unique
    toy = items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]     # "Children" as in ML-1M
    assert not any("\r" in t for t in items["title"])                       # CRLF line ends are not in titles
    assert items["title"].str.contains(",").any() and items["year"].notna().mean() > 0.99
    assert not any("(no genres listed)" in g for g in items["genres"]) and (items["genres"].str.len() == 0).any()


def test_parse_year():
    assert parse_year("Toy Story (1995)") == 1995
    assert parse_year("Babylon 5") is None
    assert parse_year("Cosmos (1980) ") == 1980


# ----------------------------------------------------------------- bad input
def write(p: Path, text: str, enc="utf-8") -> Path:
    p.write_bytes(text.encode(enc))
    return p


@pytest.fixture
def ml1m(tmp_path):
    write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation|Children's\n2::Heat (1995)::Action\n", "latin-1")
    write(tmp_path / "ratings.dat", "1::1::5::100\n1::2::3::200\n2::1::4::150\n")
    return tmp_path


def test_ml1m_good(ml1m):
    write(ml1m / "ratings.dat", "1::1::5::100\n\n1::2::3::200\n2::1::4::150\n")   # blank lines carry no data
    ds = load_folder(ml1m)
    assert len(ds.interactions) == 3 and ds.items.loc[0, "genres"] == ["Animation", "Children"]


@pytest.mark.parametrize("ratings, message", [
    ("1::1::5::100\n1::2::3\n", r"ratings.dat:2: expected 4 fields"),
    ("1::1::5::100\n1::x::3::200\n", r"ratings.dat:2: field item_id must be int, got 'x'"),
    ("1,1,5,100\n", r"ratings.dat:1: expected fields separated by '::'"),
])
def test_ml1m_bad_ratings_name_file_and_line(ml1m, ratings, message):
    write(ml1m / "ratings.dat", ratings)
    with pytest.raises(DataError, match=message):
        load_folder(ml1m)


def test_ml1m_bad_movies_line(ml1m):
    write(ml1m / "movies.dat", "1::Toy Story (1995)::Animation\n2::Heat (1995)\n", "latin-1")
    with pytest.raises(DataError, match=r"movies.dat:2: expected 3 '::'-separated fields \(MovieID::Title::Genres\)"):
        load_folder(ml1m)


def test_csv_missing_column_and_bad_value(tmp_path):
    write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Heat, The (1995)",Action\n')
    write(tmp_path / "ratings.csv", "userId,movieId,timestamp\n1,1,100\n")
    with pytest.raises(DataError, match=r"ratings.csv:1: header must start with .*missing: rating"):
        load_folder(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4.5,100\r\n1,1,4.0,abc\r\n")
    with pytest.raises(DataError, match=r"ratings.csv:3: field timestamp must be int, got 'abc'"):
        load_folder(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\r\n1,1,4.5,100\r\n")
    ds = load_folder(tmp_path)
    assert ds.items.loc[0, "title"] == "Heat, The (1995)" and ds.interactions["rating"].iloc[0] == 4.5
    for name in ("ratings.csv", "movies.csv"):           # saved by a spreadsheet: a UTF-8 byte-order mark
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + (tmp_path / name).read_bytes())
    bom = load_folder(tmp_path)
    assert bom.interactions.equals(ds.interactions) and bom.items.equals(ds.items)


def test_ml100k_bad_line(tmp_path):
    write(tmp_path / "u.item", "1|Toy Story (1995)|01-Jan-1995||url|" + "|".join(["0"] * 19) + "\n", "latin-1")
    write(tmp_path / "u.data", "1\t1\t5\t100\n2\t1\t4\n")
    with pytest.raises(DataError, match=r"u.data:2: expected 4 fields"):
        load_folder(tmp_path)


def test_parquet_schema_and_missing_column(tmp_path):
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10],
                  "timestamp": pd.to_datetime([1, 2, 3], unit="s")}).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"item_id": [10, 11], "genres": [["Rock"], ["Jazz", "Rock"]],
                  "energetic": [True, False]}).to_parquet(tmp_path / "items.parquet")
    ds = load_folder(tmp_path)
    assert ds.interactions["timestamp"].tolist() == [1, 2, 3]
    attrs = build_attributes(ds.items, ds.interactions)
    assert {"Rock", "Jazz", "energetic", "popularity:high"} <= set(attribute_columns(attrs))
    pd.DataFrame({"user_id": [1], "item": [10], "timestamp": [1]}).to_parquet(tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match=r"interactions.parquet: missing column\(s\) item_id"):
        load_folder(tmp_path)


# One bad file per user-facing loader error. The layouts are valid as given; each case replaces one
# file (None: removes it, and the format's loader is called directly, as load_folder would not pick
# the format). The message must be exactly this one line; {dir} is the folder.
FLAGS = "|".join(["0"] * 19)
INTS = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 11], "timestamp": [1, 2]})
LAYOUTS = {
    "movielens-1m": {"movies.dat": "1::Toy Story (1995)::Animation|Children's\n2::Heat (1995)::Action\n",
                     "ratings.dat": "1::1::5::100\n1::2::3::200\n2::1::4::150\n"},
    "movielens-csv": {"movies.csv": 'movieId,title,genres\n1,"Heat, The (1995)",Action\n',
                      "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.5,100\n"},
    "movielens-100k": {"u.item": f"1|Toy Story (1995)|01-Jan-1995||url|{FLAGS}\n", "u.data": "1\t1\t5\t100\n",
                       "u.genre": "Action|0\n" + "".join(f"g{i}|{i}\n" for i in range(1, 19))},
    "parquet": {"interactions.parquet": INTS, "items.parquet": pd.DataFrame({"item_id": [10, 11]})},
}
BAD_FILES = {
    # ML-1M
    "ml1m-duplicate-id": ("movielens-1m", "movies.dat", "1::A (1995)::Action\n1::B (1996)::Drama\n",
                          "{dir}/movies.dat: duplicate item_id 1"),
    "ml1m-movie-id": ("movielens-1m", "movies.dat", "x::A (1995)::Action\n", "{dir}/movies.dat:1: MovieID must be int, got 'x'"),
    "ml1m-empty-field": ("movielens-1m", "ratings.dat", "1::1::5::100\n1::::3::200\n",
                         "{dir}/ratings.dat:2: field item_id must be int, got ''"),
    "ml1m-rating-type": ("movielens-1m", "ratings.dat", "1::1::five::100\n",
                         "{dir}/ratings.dat:1: field rating must be float, got 'five'"),
    "ml1m-missing-ratings": ("movielens-1m", "ratings.dat", None, "{dir}/ratings.dat: file not found"),
    "ml1m-missing-movies": ("movielens-1m", "movies.dat", None, "{dir}/movies.dat: file not found"),
    # MovieLens CSV
    "csv-header-order": ("movielens-csv", "ratings.csv", "movieId,userId,rating,timestamp\n1,1,4.5,100\n",
                         "{dir}/ratings.csv:1: header must start with userId,movieId,rating,timestamp, "
                         "got 'movieId,userId,rating,timestamp'"),
    "csv-movies-header": ("movielens-csv", "movies.csv", "id,title,genres\n1,X (1995),Action\n",
                          "{dir}/movies.csv:1: header must start with movieId,title,genres (missing: movieId)"),
    "csv-movie-id": ("movielens-csv", "movies.csv", 'movieId,title,genres\nabc,"X (1995)",Action\n',
                     "{dir}/movies.csv: In CSV column #0: CSV conversion error to int64: invalid value 'abc'"),
    "csv-movies-fields": ("movielens-csv", "movies.csv", "movieId,title,genres\n1,X (1995)\n",
                          "{dir}/movies.csv: CSV parse error: Expected 3 columns, got 2: 1,X (1995)"),
    "csv-duplicate-id": ("movielens-csv", "movies.csv", "movieId,title,genres\n1,A (1995),Action\n1,B (1996),Drama\n",
                         "{dir}/movies.csv: duplicate item_id 1"),
    "csv-empty-rating": ("movielens-csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,,100\n",
                         "{dir}/ratings.csv:2: field rating must be float, got ''"),
    "csv-not-utf8": ("movielens-csv", "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.5,10\xff0\n",
                     "{dir}/ratings.csv:2: field timestamp must be int, got '10\ufffd0'"),
    "csv-movies-not-utf8": ("movielens-csv", "movies.csv", b'movieId,title,genres\n1,"Heat \xff (1995)",Action\n',
                            "{dir}/movies.csv: In CSV column #1: CSV conversion error to string: invalid UTF8 data"),
    # ML-100K
    "100k-item-fields": ("movielens-100k", "u.item", "1|Toy Story (1995)|01-Jan-1995||url|0\n",
                         "{dir}/u.item:1: expected 24 '|'-separated fields (id|title|release|video|url|genre flags), "
                         "got 6: '1|Toy Story (1995)|01-Jan-1995||url|0'"),
    "100k-genre-flag": ("movielens-100k", "u.item", f"1|Toy Story (1995)|01-Jan-1995||url|x|{FLAGS[2:]}\n",
                        "{dir}/u.item:1: item id and genre flags must be integers"),
    "100k-genre-line": ("movielens-100k", "u.genre", "Action\n",
                        "{dir}/u.genre:1: expected 2 '|'-separated fields (genre|number), got 1: 'Action'"),
    "100k-genre-number": ("movielens-100k", "u.genre", "Action|first\n",
                          "{dir}/u.genre:1: genre number must be an integer, got 'first'"),
    "100k-missing-items": ("movielens-100k", "u.item", None, "{dir}/u.item: file not found"),
    # generic Parquet
    "parquet-unreadable": ("parquet", "interactions.parquet", b"PAR1 not parquet",
                           "{dir}/interactions.parquet: not a readable Parquet file (Could not open Parquet input "
                           "source '{dir}/interactions.parquet': Parquet magic bytes not found in footer. Either "
                           "the file is corrupted or this is not a parquet file.)"),
    "parquet-null": ("parquet", "interactions.parquet", INTS.assign(user_id=[1, None]),
                     "{dir}/interactions.parquet: row 1: null user_id"),
    "parquet-text-ids": ("parquet", "interactions.parquet", INTS.assign(item_id=["a", "b"]),
                         "{dir}/interactions.parquet: column item_id must be integer, got str"),
    "parquet-fractional": ("parquet", "interactions.parquet", INTS.assign(timestamp=[1.5, 2.0]),
                           "{dir}/interactions.parquet: column timestamp must be integer, got float64"),
    "items-unreadable": ("parquet", "items.parquet", b"PAR1 not parquet",
                         "{dir}/items.parquet: not a readable Parquet file (Could not open Parquet input source "
                         "'{dir}/items.parquet': Parquet magic bytes not found in footer. Either the file is "
                         "corrupted or this is not a parquet file.)"),
    "items-no-id": ("parquet", "items.parquet", pd.DataFrame({"title": ["A"]}), "{dir}/items.parquet: missing column item_id"),
    "items-duplicate-id": ("parquet", "items.parquet", pd.DataFrame({"item_id": [10, 10]}),
                           "{dir}/items.parquet: duplicate item_id 10"),
    "items-null-id": ("parquet", "items.parquet", pd.DataFrame({"item_id": [10.0, None]}),
                      "{dir}/items.parquet: row 1: null item_id"),
    "items-text-id": ("parquet", "items.parquet", pd.DataFrame({"item_id": ["a", "b"]}),
                      "{dir}/items.parquet: column item_id must be integer, got str"),
    "items-genres-type": ("parquet", "items.parquet", pd.DataFrame({"item_id": [10, 11], "genres": [1, 2]}),
                          "{dir}/items.parquet: genres must be a list of strings or a '|'-separated string, got 1"),
}


def lay_out(folder: Path, files: dict) -> Path:
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            content.to_parquet(folder / name)
        else:
            (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    return folder


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_layouts_of_the_bad_file_cases_are_valid(tmp_path, fmt):
    assert detect_format(lay_out(tmp_path, LAYOUTS[fmt])) == fmt and len(load_folder(tmp_path).interactions) > 0


@pytest.mark.parametrize("fmt, name, content, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_each_bad_file_gets_its_one_line_error(tmp_path, fmt, name, content, message):
    folder = lay_out(tmp_path / "data", LAYOUTS[fmt])
    if content is None:
        (folder / name).unlink()
        load = FORMATS[fmt][1]
    else:
        lay_out(folder, {name: content})
        load = load_folder
    with pytest.raises(DataError) as e:
        load(folder)
    assert e.type is DataError and str(e.value) == message.replace("{dir}", str(folder))


def test_bad_folder_arguments(tmp_path):
    parquet = lay_out(tmp_path / "log", LAYOUTS["parquet"])
    with pytest.raises(DataError) as e:
        load_folder(parquet / "interactions.parquet")
    assert str(e.value) == f"{parquet}/interactions.parquet: not a directory"
    with pytest.raises(DataError) as e:
        load_folder(parquet, min_rating=4)
    assert str(e.value) == "log: min_rating set but the log has no rating column"
    (parquet / "interactions.parquet").unlink()
    with pytest.raises(DataError) as e:
        load_folder(parquet)
    assert str(e.value) == (f"{parquet}: unrecognised dataset layout (expected one of: interactions.parquet; "
                            "ratings.dat + movies.dat; ratings.csv + movies.csv; u.data + u.item; found: items.parquet)")


def test_unknown_layout(tmp_path):
    write(tmp_path / "foo.txt", "x")
    with pytest.raises(DataError, match="unrecognised dataset layout"):
        load_folder(tmp_path)


def test_min_rating_filter_counts_what_it_drops(ml1m):
    ds = load_folder(ml1m, min_rating=4)
    assert len(ds.interactions) == 2 and ds.dropped == {"rating_below_min": 1}


# ----------------------------------------------------------------- download / resolution
def test_offline_missing_dataset_says_what_to_do(tmp_path, monkeypatch):
    from saerec.data.download import resolve
    monkeypatch.setenv("SAEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SAEREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SAEREC_OFFLINE", "1")
    with pytest.raises(DatasetNotFound, match=r"download .*ml-1m.zip \(md5 c4d9eecfca2ab87c1945afe126590906\)"):
        resolve("ml-1m")
    (tmp_path / "data" / "ml-1m").mkdir(parents=True)
    assert resolve("ml-1m") == tmp_path / "data" / "ml-1m"          # local copy wins, no download


def test_download_checks_md5_and_caches(tmp_path, monkeypatch):
    """A real HTTP download over loopback of a GroupLens-shaped zip."""
    import hashlib
    import http.server
    import threading
    from functools import partial
    from saerec.data import download as dl

    src = data_folder("ml-100k")
    served = tmp_path / "served"
    served.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in ("u.data", "u.item", "u.genre"):
            zf.write(src / f, f"ml-100k/{f}")
    (served / "ml-100k.zip").write_bytes(buf.getvalue())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SAEREC_GROUPLENS_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
        monkeypatch.setenv("SAEREC_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.delenv("SAEREC_DATA_DIR", raising=False)
        monkeypatch.setenv("SAEREC_OFFLINE", "0")
        good = hashlib.md5(buf.getvalue()).hexdigest()
        monkeypatch.setitem(dl.GROUPLENS, "ml-100k", dl.Remote("ml-100k.zip", "0" * 32, "ml-100k"))
        with pytest.raises(DataError, match="md5 mismatch"):
            dl.resolve("ml-100k")
        assert not (tmp_path / "cache" / "ml-100k").exists()           # nothing unpacked
        monkeypatch.setitem(dl.GROUPLENS, "ml-100k", dl.Remote("ml-100k.zip", good, "ml-100k"))
        folder = dl.resolve("ml-100k")
        assert folder == tmp_path / "cache" / "ml-100k" and len(load_folder(folder).interactions) == 100_000
        httpd.shutdown()
        assert dl.resolve("ml-100k") == folder                         # cached: no network needed
    finally:
        httpd.server_close()


def grouplens_zip(folder: Path, members: dict[str, bytes]) -> None:
    """An archive named as GroupLens names ml-100k's, served from ``folder`` (a file:// URL)."""
    folder.mkdir()
    with zipfile.ZipFile(folder / "ml-100k.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.parametrize("members, message", [
    ({"ml-100k/u.data": b"1\t1\t5\t100\n", "../escape.txt": b"x"}, "unsafe path in archive: ../escape.txt"),
    ({"ml-100k/u.data": b"1\t1\t5\t100\n", "/etc/escape.txt": b"x"}, "unsafe path in archive: /etc/escape.txt"),
    ({"ml-100k/../../escape.txt": b"x"}, "unsafe path in archive: ml-100k/../../escape.txt"),
    ({"ML-100K/u.data": b"1\t1\t5\t100\n"}, "archive has no folder ml-100k/"),
], ids=["parent", "absolute", "nested-parent", "no-folder"])
def test_download_refuses_bad_archives(tmp_path, monkeypatch, members, message):
    """Nothing of a refused archive reaches the cache, or anywhere outside it."""
    from saerec.data import download as dl

    grouplens_zip(tmp_path / "served", members)
    url = (tmp_path / "served").as_uri() + "/"
    monkeypatch.setenv("SAEREC_GROUPLENS_URL", url)
    monkeypatch.setitem(dl.GROUPLENS, "ml-100k", dl.Remote("ml-100k.zip", None, "ml-100k"))
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(DataError) as e:
        dl.download("ml-100k", cache)
    assert e.type is DataError and str(e.value) == f"{url}ml-100k.zip: {message}"
    assert list(cache.iterdir()) == [] and not list(tmp_path.rglob("escape.txt"))


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    """A refused connection (a loopback port nobody listens on) is a DatasetNotFound with the instructions."""
    import socket
    from saerec.data.download import resolve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                  # closed again below: connecting is refused
    monkeypatch.setenv("SAEREC_GROUPLENS_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("SAEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SAEREC_DATA_DIR", raising=False)
    monkeypatch.setenv("SAEREC_OFFLINE", "0")
    with pytest.raises(DatasetNotFound) as e:
        resolve("ml-100k")
    assert str(e.value).startswith(f"dataset 'ml-100k' not found (looked in {tmp_path / 'cache' / 'ml-100k'}) and "
                                   f"could not be downloaded: download http://127.0.0.1:{port}/ml-100k.zip (md5 ")
    assert str(e.value).endswith("[<urlopen error [Errno 111] Connection refused>]") and "\n" not in str(e.value)


# ----------------------------------------------------------------- split
def hand_made() -> pd.DataFrame:
    rows = []
    # users 1-8 start at t=1..8; users 9, 10 start last (t=20, 21) -> 2 newest of 10 = 20%
    for u in range(1, 9):
        rows += [(u, 100 + u, u), (u, 200, u + 10), (u, 300 + u, u + 30)]
    rows += [(9, 200, 20), (9, 101, 22), (9, 999, 23), (10, 102, 21), (10, 103, 25)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_split_matches_hand_made_example():
    df = hand_made()
    assert new_users_cut(df, 0.2) == 20
    sp = split(df, SplitConfig(test_fraction=0.2, sae_fraction=0.25, seed=1))
    assert sp.cut_time == 20
    test = sp.part("test")
    assert set(test["user_id"]) == {9, 10}
    assert 999 not in set(test["item_id"])                            # cold item dropped
    assert sp.stats["dropped_test_cold_interactions"] == 1
    train = sp.train()
    assert (train["timestamp"] < 20).all()
    assert len(train) == 16                                            # 8 users x 2 interactions before T
    assert sp.stats["interactions_after_cut_of_train_users"] == 8
    assert sp.stats["sae_users"] == 2 and sp.stats["rec_users"] == 6


def _mutated(**values) -> SplitConfig:
    """A config changed after it was built: the config rejects these values when set
    (tests/test_config.py); split() still guards a library caller that assigns them directly."""
    cfg = SplitConfig()
    for k, v in values.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.parametrize("log, cfg, message", [
    (hand_made(), _mutated(test_fraction=1.0), "split: test_fraction and sae_fraction must be in (0, 1)"),
    (hand_made(), _mutated(sae_fraction=0.0), "split: test_fraction and sae_fraction must be in (0, 1)"),
    (hand_made().iloc[:0], SplitConfig(), "split: not enough users for a test set"),
    (hand_made(), SplitConfig(test_fraction=0.2, sae_fraction=0.01),
     "split: a part is empty (rec users 8, sae users 0, test users 2); need more data"),
    (hand_made().query("user_id < 9 or item_id == 999"), SplitConfig(test_fraction=0.1),
     "split: a part is empty (rec users 5, sae users 3, test users 0); need more data"),
], ids=["test-fraction", "sae-fraction", "empty-log", "no-sae-users", "only-cold-test-items"])
def test_split_errors(log, cfg, message):
    with pytest.raises(DataError) as e:
        split(log, cfg)
    assert str(e.value) == message


def test_split_has_no_leakage_on_movielens():
    ds = load_folder(data_folder("ml-1m-users-1-2999"))
    sp = split(ds.interactions, SplitConfig())
    rec, sae, test = (sp.part(p) for p in ("rec", "sae", "test"))
    train = sp.train()
    assert (train["timestamp"] < sp.cut_time).all()
    starts = ds.interactions.groupby("user_id")["timestamp"].min()
    assert (starts[test["user_id"].unique()] >= sp.cut_time).all()    # test users are new after T
    assert set(test["user_id"]).isdisjoint(train["user_id"])
    assert set(rec["user_id"]).isdisjoint(sae["user_id"])
    assert set(test["item_id"]) <= set(train["item_id"])
    assert set(sp.val_users) <= set(sae["user_id"])
    assert set(sp.val_users).isdisjoint(rec["user_id"])                # validation never in recommender training
    n_train_users = train["user_id"].nunique()
    assert abs(sae["user_id"].nunique() - 0.4 * n_train_users) <= 1
    assert abs(test["user_id"].nunique() - 0.1 * ds.interactions["user_id"].nunique()) <= 5
    assert train.groupby("user_id").size().min() >= 2
    # deterministic under the seed
    again = split(ds.interactions, SplitConfig())
    assert set(again.part("sae")["user_id"]) == set(sae["user_id"])


def test_eval_pairs_input_is_history_minus_last():
    df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [5, 6, 7, 6, 5], "timestamp": [3, 1, 2, 1, 1]})
    idx = ItemIndex.from_ids([5, 6, 7])
    seqs = build_sequences(df, idx)
    inputs, targets = eval_pairs(seqs, max_len=10)
    assert idx.to_ids(inputs[0]).tolist() == [6, 7] and idx.to_ids([targets[0]]).tolist() == [5]
    assert idx.to_ids(inputs[1]).tolist() == [6] and idx.to_ids([targets[1]]).tolist() == [5]   # file order on ties
    assert idx.to_index([7, 42]).tolist() == [3, 0]


def test_eval_points_are_the_last_predictions_of_each_user_with_the_paper_pair_last():
    df = pd.DataFrame({"user_id": [1] * 5 + [2] * 2, "item_id": [1, 2, 3, 4, 5, 3, 1], "timestamp": range(7)})
    idx = ItemIndex.from_ids([1, 2, 3, 4, 5])
    seqs = build_sequences(df, idx)
    inputs, targets, owner = eval_points(seqs, max_len=2, last=3)
    assert owner.tolist() == [0, 0, 0, 1]                     # user 2 has 2 items: one point (inputs keep >= 1 item)
    assert [idx.to_ids(x).tolist() for x in inputs] == [[1, 2], [2, 3], [3, 4], [3]]   # truncated to max_len
    assert idx.to_ids(targets).tolist() == [3, 4, 5, 1]
    pairs = eval_pairs(seqs, max_len=2)
    last = [2, 3]
    assert [x.tolist() for x in pairs[0]] == [inputs[i].tolist() for i in last]
    assert pairs[1].tolist() == targets[last].tolist()
    with pytest.raises(ValueError):
        eval_points(seqs, max_len=2, last=0)


# ----------------------------------------------------------------- synthetic
def test_synthetic_plants_genres_and_streams(tmp_path):
    ds = generate(SyntheticConfig(users=300, items=120, genres=5, seed=3))
    assert ds.interactions.groupby(["user_id", "item_id"]).size().max() == 1
    attrs = build_attributes(ds.items, ds.interactions)
    assert {"Action", "Children", "Fantasy", "Sci-Fi", "Western"} <= set(genre_columns(attrs))
    # users concentrate on few genres: the top genre of a user's first 10 items covers far more than 1/5
    primary = dict(zip(ds.items["item_id"], [g[0] for g in ds.items["genres"]]))
    first = ds.interactions.groupby("user_id").head(10).assign(g=lambda d: d["item_id"].map(primary))
    share = first.groupby("user_id")["g"].agg(lambda s: s.value_counts(normalize=True).iloc[0]).mean()
    assert share > 0.45
    folder = write_parquet(tmp_path / "syn", SyntheticConfig(users=500, items=100, seed=1), chunk_users=128)
    assert len(load_folder(folder).interactions) > 500 * 15


def test_ml20m_shaped_synthetic_preset_statistics(tmp_path):
    """data.synthetic_preset=ml-20m at 1/200 of ML-20M's users: its shape (users, catalog, ~144
    interactions per user with ML-20M's spread, a long-tailed popularity, ML-20M's genre mix),
    planted genres and decades, determinism by seed, and the chunked writer giving the same log."""
    from saerec.config import RunConfig
    from saerec.data.paper_shape import ML20M_DECADES, ML20M_GENRES, PaperShapeConfig
    from saerec.data.prepare import load_dataset

    cfg = RunConfig.from_dict({"data": {"dataset": "synthetic", "synthetic_preset": "ml-20m",
                                        "synthetic_scale": 0.005, "synthetic_seed": 4}})
    ds = load_dataset(cfg)
    ints, items = ds.interactions, ds.items
    n_users = round(138_493 * 0.005)
    lens = ints.groupby("user_id").size()
    assert len(lens) == n_users and len(items) == 26_744
    assert 0.8 < len(ints) / (20_000_263 * 0.005) < 1.2           # ~144 per user, as ML-20M
    assert lens.min() >= 18 and 55 <= lens.median() <= 85 and lens.max() > 600
    assert ints.groupby(["user_id", "item_id"]).size().max() == 1
    counts = ints["item_id"].value_counts().to_numpy()
    assert counts[:267].sum() / len(ints) > 0.15                   # the top 1% of the catalog: a long head
    assert (counts <= 2).mean() > 0.3                              # ... and a long tail
    assert counts[0] / n_users < 0.6                               # no item seen by every user
    primary = np.array([g[0] for g in items["genres"]])
    share = pd.Series(primary).value_counts(normalize=True)
    want = pd.Series(ML20M_GENRES, dtype=float) / sum(ML20M_GENRES.values())
    assert (share.reindex(want.index).fillna(0) - want).abs().max() < 0.02
    assert set(items["year"] // 10 * 10) <= set(ML20M_DECADES)
    # planted: consecutive picks share the primary genre far more often than two random picks do
    g = ints.assign(g=ints["item_id"].map(dict(zip(items["item_id"], primary)))).groupby("user_id")["g"]
    same = (g.shift() == ints.assign(g=ints["item_id"].map(dict(zip(items["item_id"], primary))))["g"]).mean()
    chance = (ints["item_id"].map(dict(zip(items["item_id"], primary))).value_counts(normalize=True) ** 2).sum()
    assert same > 2 * chance
    # planted decades: a user's most common decade covers more of its items than the global one does
    dec = ints["item_id"].map(dict(zip(items["item_id"], items["year"] // 10)))
    top_dec = dec.groupby(ints["user_id"]).agg(lambda s: s.value_counts(normalize=True).iloc[0]).mean()
    assert top_dec > dec.value_counts(normalize=True).iloc[0] + 0.05
    # deterministic by seed; the chunked Parquet writer gives the same log
    small = PaperShapeConfig(users=300, chunk_users=64, seed=4)
    a, b = generate(small).interactions, generate(PaperShapeConfig(users=300, chunk_users=64, seed=4)).interactions
    pd.testing.assert_frame_equal(a, b)
    assert not generate(PaperShapeConfig(users=300, chunk_users=64, seed=5)).interactions["item_id"].equals(a["item_id"])
    folder = write_parquet(tmp_path / "paper", small)
    pd.testing.assert_frame_equal(load_folder(folder).interactions[list(a.columns)].reset_index(drop=True),
                                  a.reset_index(drop=True), check_dtype=False)


def test_read_sequences_equals_the_in_memory_sequences(tmp_path):
    """The streamed stages read one part from sequences.parquet (and the test users' predictions
    from it, test_pairs); it must be exactly what the full interaction log gives, unknown items (0)
    included."""
    from saerec.config import RunConfig
    from saerec.data.prepare import part_users, prepare, read_sequences
    from saerec.rundir import RunDir

    cfg = RunConfig.from_dict({"data": {"dataset": "synthetic", "synthetic_users": 400}})
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    small = ItemIndex(prep.index.item_ids[::2])           # half the catalog unknown: ids must map to 0
    for index in (prep.index, small):
        for part in ("rec", "sae", "test"):
            a = build_sequences(prep.split.part(part), index)
            for b in (read_sequences(run, part, index), read_sequences(run, part, index, batch_users=7)):
                assert len(b) > 0
                np.testing.assert_array_equal(a.users, b.users)
                np.testing.assert_array_equal(a.offsets, b.offsets)
                np.testing.assert_array_equal(a.items, b.items)
            if index is small:                            # the id reader: the same users, in file order
                assert part_users(run, part, batch_users=7).tolist() == a.users.tolist()
    assert (read_sequences(run, "test", small).items == 0).any()
    # test_pairs (every test-user scorer's reader) in batches of 7 users, keeping each sequence's tail:
    # exactly eval_points on the whole in-memory part, each point's user and sequence number included
    from saerec.data.sequences import eval_points
    from saerec.model.checkpoint import test_pairs

    whole = build_sequences(prep.split.part("test"), prep.index)
    assert whole.lengths().max() > 5 + 4 and len(whole) > 7       # tails cut, several batches
    for max_len, last in ((5, 1), (5, 4), (200, 3)):
        x, t, o = eval_points(whole, max_len, last)
        got = test_pairs(run, max_len, last, index=prep.index, batch_users=7)
        assert len(got.inputs) == len(x) > 0 and all(np.array_equal(a, b) for a, b in zip(x, got.inputs))
        np.testing.assert_array_equal(t, got.targets)
        np.testing.assert_array_equal(o, got.owner)
        np.testing.assert_array_equal(whole.users[o], got.users)
    some = prep.split.val_users[::3][::-1]                # a user filter: those users only, in file order
    a = build_sequences(prep.split.part("sae"), prep.index).select(np.sort(some))
    b = read_sequences(run, "sae", prep.index, users=some, batch_users=7)
    assert len(b) == len(some) > 0
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.items, b.items)
