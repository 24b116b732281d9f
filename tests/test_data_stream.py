"""The streamed data stage (saerec.data.stream): many chunks and buckets give exactly the artifacts
of one bucket, which are main's before streaming (digests below), and no bucket holds more than
about its share of the log."""

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import data_folder
from saerec.config import RunConfig, SplitConfig
from saerec.data import loaders
from saerec.data.loaders import load_folder
from saerec.data.prepare import config_hash, load_dataset
from saerec.data.sequences import ItemIndex, build_sequences
from saerec.data.split import split
from saerec.data.stream import stream_data
from saerec.errors import DataError
from saerec.rundir import A, RunDir

OUTPUTS = ["interactions.parquet", "items.parquet", "sequences.parquet", "split.json"]

# Digests of RUN/data written by main before the stage streamed (the whole log in memory), for
# these configs: a behaviour change of the split, the filters or the writers changes one of them.
MAIN = {
    "ml-100k": ({"data": {"dataset": "ml-100k", "min_rating": 3.5}},
                {"sequences": "843a9e9162487910", "items": "816366122c6daf2a", "meta": "b514a169cde7de47",
                 "interactions": "7dcc745a58ca7068"}),
    "synthetic": ({"data": {"dataset": "synthetic", "synthetic_users": 400}},
                  {"sequences": "631935a429979590", "items": "2f50e0129ed5bb5d", "meta": "fb1bf244c10f9d53",
                   "interactions": "6387102858be1bcd"}),
}


def digests(run: RunDir) -> dict:
    """Content digests: every user's part and item sequence, the items table, split.json (less the
    machine's path and the config hash), the interaction rows (as a sorted multiset)."""
    seq = pq.read_table(run.path(A.SEQUENCES)).to_pydict()
    items = pd.read_parquet(run.path(A.ITEMS))
    meta = {k: v for k, v in run.read_json(A.SPLIT).items() if k not in ("source", "config_hash")}
    ints = pd.read_parquet(run.path(A.INTERACTIONS))
    ints["part"] = ints["part"].astype(str)
    ints = ints.sort_values(list(ints.columns), kind="stable").reset_index(drop=True)

    def h(s):
        return hashlib.sha256(s.encode()).hexdigest()[:16]
    return {"sequences": h(json.dumps(list(zip(seq["user_id"], seq["part"], seq["items"])))),
            "items": h(items.to_csv(index=False)), "meta": h(json.dumps(meta, sort_keys=True)),
            "interactions": h(ints.to_csv(index=False))}


@pytest.mark.parametrize("name", list(MAIN))
def test_buckets_give_one_buckets_and_mains_artifacts_with_bounded_buckets(tmp_path, name):
    if name == "ml-100k":
        data_folder("ml-100k")
    overrides, want = MAIN[name]
    cfg = RunConfig.from_dict(overrides)
    one, many = RunDir(tmp_path / "one"), RunDir(tmp_path / "many")
    meta1, rep1 = stream_data(one, cfg, config_hash(cfg))
    n = meta1["interactions_total"]
    bucket_rows, chunk_rows = n // 6, 100_000 // 5          # ml-100k: 5 chunks of its 100,000 raw rows
    meta, rep = stream_data(many, cfg, config_hash(cfg), bucket_rows=bucket_rows, chunk_rows=chunk_rows)
    assert rep1.buckets == 1 and rep1.max_bucket_rows == n
    assert digests(one) == digests(many) == want
    assert meta == meta1                                     # val users and stats too
    seq = pq.read_table(many.path(A.SEQUENCES), columns=["user_id"]).column(0).to_numpy()
    assert (np.diff(seq) > 0).all()                          # sorted by user: Sequences.select searches it
    # bounded: no bucket held more than its share plus one user's rows
    longest = int(load_dataset(cfg).interactions.groupby("user_id").size().max())
    assert rep.buckets >= 6 and rep.max_bucket_rows <= bucket_rows + longest
    if name == "ml-100k":
        assert rep.chunks == 5 and rep.max_chunk_rows <= chunk_rows
    assert sorted(p.name for p in many.data.iterdir()) == OUTPUTS      # the spill folder is gone


def test_ratings_csv_streams_in_blocks(tmp_path, monkeypatch):
    """ratings.csv (ML-20M's layout) read in small blocks: the same rows as pandas' own parser, and
    the streamed stage gives the in-memory split's sequences."""
    folder = data_folder("ml-latest-small")
    monkeypatch.setattr(loaders, "CSV_BLOCK", 1 << 18)            # ~2.5 MB file: about 10 blocks
    ds = load_folder(folder)
    ref = pd.read_csv(folder / "ratings.csv").set_axis(["user_id", "item_id", "rating", "timestamp"], axis=1)
    np.testing.assert_array_equal(ds.interactions[["user_id", "item_id", "timestamp"]].to_numpy(),
                                  ref[["user_id", "item_id", "timestamp"]].to_numpy())
    np.testing.assert_array_equal(ds.interactions["rating"].to_numpy(), ref["rating"].to_numpy(np.float32))
    cfg = RunConfig.from_dict({"data": {"dataset": "movielens", "data_dir": str(folder)}})
    run = RunDir(tmp_path / "run")
    meta, rep = stream_data(run, cfg, config_hash(cfg), bucket_rows=20_000)
    assert rep.chunks >= 8 and rep.buckets >= 5
    sp = split(ds.interactions, SplitConfig())
    index = ItemIndex.from_ids(sp.train()["item_id"])
    seq = pq.read_table(run.path(A.SEQUENCES)).to_pandas()
    for part in ("rec", "sae", "test"):
        a = build_sequences(sp.part(part), index)
        b = seq[seq["part"] == part]
        np.testing.assert_array_equal(a.users, b["user_id"].to_numpy())
        np.testing.assert_array_equal(a.items, index.to_index(np.concatenate(b["items"].to_list())))
    assert meta["cut_time"] == sp.cut_time and meta["val_users"] == sp.val_users.tolist()


def test_a_bad_line_deep_in_the_stream_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "CSV_BLOCK", 4096)
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Action\n2,Up (2009),Comedy\n")
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{1 + u % 2},4.0,{1000 + u}" for u in range(1, 3000)]
    lines[2500] = "2500,1,4.0,later"
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    cfg = RunConfig.from_dict({"data": {"dataset": "movielens", "data_dir": str(folder)}})
    run = RunDir(tmp_path / "run")
    with pytest.raises(DataError) as e:
        stream_data(run, cfg, config_hash(cfg))
    assert str(e.value) == f"{folder / 'ratings.csv'}:2501: field timestamp must be int, got 'later'"
    assert list(run.data.iterdir()) == []                    # no spill left, no output half-written
    # the generic Parquet schema in batches: a null is named by its row in the file, not in the batch
    pq_folder = tmp_path / "pq"
    pq_folder.mkdir()
    pd.DataFrame({"user_id": [1.0] * 7 + [None] + [2.0] * 4, "item_id": range(12),
                  "timestamp": range(12)}).to_parquet(pq_folder / "interactions.parquet")
    cfg = RunConfig.from_dict({"data": {"dataset": "movielens", "data_dir": str(pq_folder)}})
    with pytest.raises(DataError, match=r"interactions.parquet: row 7: null user_id$"):
        stream_data(RunDir(tmp_path / "run2"), cfg, config_hash(cfg), chunk_rows=3)
