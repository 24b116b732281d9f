"""The data stage: load -> split -> attributes, written once to ``RUN/data/`` and read by every later stage.

Reruns with the same data/split config reuse ``RUN/data`` (checked by a hash of that config).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..rundir import A, RunDir
from .schema import INTERACTION_COLUMNS, Dataset
from .sequences import ItemIndex, Sequences, build_sequences, concat_sequences, eval_pairs, offsets_of
from .split import PARTS, Split

log = logging.getLogger("saerec.data")


@dataclass
class Prepared:
    split: Split
    items: pd.DataFrame       # attribute table (saerec.data.attributes)
    index: ItemIndex          # dense indices over train items (rec + sae parts)
    meta: dict

    def sequences(self, part: str) -> Sequences:
        return build_sequences(self.split.part(part), self.index)

    def eval_set(self, part: str, max_len: int, users=None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(user ids, inputs, targets) for test users or for the validation users of the SAE part."""
        seqs = self.sequences(part)
        if users is not None:
            seqs = seqs.select(users)
        inputs, targets = eval_pairs(seqs, max_len)
        return seqs.users, inputs, targets


def config_hash(cfg: RunConfig) -> str:
    blob = json.dumps({"data": asdict(cfg.data), "split": asdict(cfg.split)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_dataset(cfg: RunConfig) -> Dataset:
    """The configured dataset in memory, filtered (small logs, tests): the data stage's chunks, joined."""
    from .chunks import open_source

    src = open_source(cfg)
    chunks = [df for df, _ in src.chunks]
    ints = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=list(INTERACTION_COLUMNS))
    return Dataset(src.name, ints, src.items, src.source, src.dropped)


def prepare_files(run: RunDir, cfg: RunConfig, force: bool = False) -> dict:
    """Write ``RUN/data`` with bounded memory (:mod:`saerec.data.stream`) unless it holds this
    data/split config already; returns the split meta (split.json). Never loads the log whole."""
    from .stream import stream_data

    h = config_hash(cfg)
    if not force and run.has(A.SPLIT) and run.read_json(A.SPLIT).get("config_hash") == h:
        log.info("data: reusing %s (same data/split config)", run.data)
        return run.read_json(A.SPLIT)
    return stream_data(run, cfg, h)[0]


def prepare(run: RunDir, cfg: RunConfig, force: bool = False) -> Prepared:
    """:func:`prepare_files`, then the whole prepared data in memory (small runs, tests, tools)."""
    prepare_files(run, cfg, force)
    return load_prepared(run)


SEQ_BATCH_USERS = 512


def _part_batches(run: RunDir, parts: tuple[str, ...], columns: list[str], users=None,
                  batch_users: int = SEQ_BATCH_USERS):
    """``(part name, record batch)`` for each of ``parts`` in ``RUN/data/sequences.parquet``, read
    ``batch_users`` rows at a time and filtered per batch (``users``: only those user ids), so what a
    reader holds at once is one batch, never the whole file.

    Why 512 users, one thread and no pre-buffering: the file's row groups hold 4,096 users, and
    reading a whole row group at once (the reader's default) peaked pyarrow's pool at 22 MB at
    scale 0.1 of the ML-20M preset, against under 5 MB this way, whatever the row groups hold
    (``benchmarks/read_memory.py``; docs/benchmarks.md, "Paper scale")."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa.array(np.asarray(users, dtype=np.int64)) if users is not None else None
    cols = ["part", *columns] + (["user_id"] if wanted is not None and "user_id" not in columns else [])
    reader = pq.ParquetFile(run.path(A.SEQUENCES), pre_buffer=False, buffer_size=1 << 20)
    for batch in reader.iter_batches(batch_size=batch_users, columns=cols, use_threads=False):
        part = batch.column("part").cast(pa.string())
        mine = pc.is_in(batch.column("user_id"), value_set=wanted) if wanted is not None else None
        for name in parts:
            keep = pc.equal(part, name) if mine is None else pc.and_(pc.equal(part, name), mine)
            yield name, batch.filter(keep)


def sequence_batches(run: RunDir, part: str, index: ItemIndex, users=None,
                     batch_users: int = SEQ_BATCH_USERS):
    """One part's sequences from ``RUN/data/sequences.parquet`` as one :class:`Sequences` per batch of
    ``batch_users`` rows (``users``: only those, in file order), items mapped to dense int32 indices at
    once (ids the model does not know map to 0): for readers that keep only part of each sequence."""
    for _, batch in _part_batches(run, (part,), ["user_id", "items"], users, batch_users):
        col = batch.column("items")
        lens = col.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
        yield Sequences(batch.column("user_id").to_numpy().astype(np.int64),
                        offsets_of(lens),
                        index.to_index(col.flatten().to_numpy()).astype(np.int32))


def part_users(run: RunDir, part: str, batch_users: int = SEQ_BATCH_USERS) -> np.ndarray:
    """The user ids of one part of ``RUN/data/sequences.parquet``, in file order (one int64 per user:
    for choosing users before their sequences are read)."""
    got = [np.zeros(0, np.int64)]
    for _, batch in _part_batches(run, (part,), ["user_id"], batch_users=batch_users):
        got.append(batch.column("user_id").to_numpy().astype(np.int64))
    return np.concatenate(got)


def read_sequences(run: RunDir, part: str, index: ItemIndex, users=None,
                   batch_users: int = SEQ_BATCH_USERS) -> Sequences:
    """One part's sequences straight from ``RUN/data/sequences.parquet``, ``batch_users`` rows at a
    time (``users``: only those, in file order): what ``Prepared.sequences(part)`` returns, for the
    streamed stages, whose memory must not grow with the log. Each batch's items are mapped to dense
    int32 indices at once, so only the selected sequences are kept. Ids the model does not know map
    to 0, as there."""
    return concat_sequences(list(sequence_batches(run, part, index, users, batch_users)))


def item_counts(run: RunDir, batch_users: int = SEQ_BATCH_USERS) -> tuple[ItemIndex, np.ndarray]:
    """The training items' index (rec + sae parts, what ``Prepared.index`` is) and each item's count
    in the rec part (dense order), from ``RUN/data/sequences.parquet`` read ``batch_users`` users at a
    time: memory grows with the catalog, not with the log."""
    ids, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)            # rec-part ids and their counts
    train_ids = np.zeros(0, np.int64)
    for name, batch in _part_batches(run, ("rec", "sae"), ["items"], batch_users=batch_users):
        flat = batch.column("items").flatten().to_numpy()
        if name == "rec":
            ids, inv = np.unique(np.concatenate([ids, flat]), return_inverse=True)
            w = np.concatenate([counts, np.ones(len(flat), np.int64)])
            counts = np.bincount(inv, weights=w, minlength=len(ids)).astype(np.int64)
        train_ids = np.union1d(train_ids, flat)
    index = ItemIndex(train_ids.astype(np.int64))
    dense = np.zeros(index.size, np.int64)
    dense[index.to_index(ids) - 1] = counts
    return index, dense


def load_prepared(run: RunDir) -> Prepared:
    meta = run.read_json(A.SPLIT)
    ints = run.read_parquet(A.INTERACTIONS)
    ints["part"] = pd.Categorical(ints["part"].astype(str), categories=list(PARTS))
    items = run.read_parquet(A.ITEMS)
    sp = Split(ints, int(meta["cut_time"]), np.asarray(meta["val_users"], dtype=np.int64),
               {k: v for k, v in meta.items() if k not in ("cut_time", "val_users")})
    return Prepared(sp, items, ItemIndex.from_ids(sp.train()["item_id"]), meta)
