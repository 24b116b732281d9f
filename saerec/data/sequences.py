"""Dense item indices and per-user sequences (CSR arrays) for the model.

The model sees dense indices 1..V (0 is padding); the dataset's own item ids are used at every
boundary (CLI, files, gRPC). :class:`ItemIndex` is the one place that maps between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def offsets_of(lengths) -> np.ndarray:
    """CSR offsets (int64, one longer) of consecutive runs of ``lengths``.

    >>> offsets_of([2, 0, 3]).tolist()
    [0, 2, 2, 5]
    """
    return np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)


@dataclass
class ItemIndex:
    item_ids: np.ndarray            # dense index i (1..V) -> item_ids[i - 1]

    @classmethod
    def from_ids(cls, ids) -> "ItemIndex":
        return cls(np.unique(np.asarray(ids, dtype=np.int64)))

    @property
    def size(self) -> int:
        return len(self.item_ids)

    def to_index(self, ids, missing: int = 0) -> np.ndarray:
        """Dataset ids -> dense indices (``missing`` for ids the model does not know)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.item_ids, ids).clip(0, max(self.size - 1, 0))
        known = self.item_ids[pos] == ids if self.size else np.zeros(len(ids), bool)
        return np.where(known, pos + 1, missing).astype(np.int64)

    def to_ids(self, index) -> np.ndarray:
        return self.item_ids[np.asarray(index, dtype=np.int64) - 1]


@dataclass
class Sequences:
    """Users' item sequences (dense indices, time order) stored flat with offsets."""

    users: np.ndarray               # user ids, one per sequence
    offsets: np.ndarray             # len(users) + 1
    items: np.ndarray               # int32 dense indices

    def __len__(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def get(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i]: self.offsets[i + 1]]

    def select(self, user_ids) -> "Sequences":
        pos = np.searchsorted(self.users, np.asarray(user_ids))
        parts = [self.get(int(p)) for p in pos]
        lens = np.array([len(p) for p in parts], dtype=np.int64)
        return Sequences(self.users[pos], offsets_of(lens),
                         np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32))


def tails(seqs: Sequences, keep: int) -> Sequences:
    """Each sequence's last ``keep`` items, copied into one array: what :func:`eval_points` with
    ``max_len + last <= keep`` reads, so a reader can drop the rest of a batch's (long) sequences."""
    lens = np.minimum(seqs.lengths(), keep)
    offsets = offsets_of(lens)
    starts = np.repeat(seqs.offsets[1:] - lens, lens)
    within = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], lens)
    return Sequences(seqs.users, offsets, seqs.items[starts + within])


def concat_sequences(parts: list[Sequences]) -> Sequences:
    """The sequences of ``parts`` one after another (none: empty)."""
    lens = np.concatenate([np.zeros(0, np.int64), *(p.lengths() for p in parts)]).astype(np.int64)
    return Sequences(np.concatenate([np.zeros(0, np.int64), *(p.users for p in parts)]).astype(np.int64),
                     offsets_of(lens),
                     np.concatenate([np.zeros(0, np.int32), *(p.items for p in parts)]))


def build_sequences(interactions: pd.DataFrame, index: ItemIndex) -> Sequences:
    """Sort by (user, time) keeping file order among equal timestamps; map ids to dense indices."""
    df = interactions[["user_id", "item_id", "timestamp"]]
    order = np.lexsort((np.arange(len(df)), df["timestamp"].to_numpy(), df["user_id"].to_numpy()))
    users_sorted = df["user_id"].to_numpy()[order]
    items = index.to_index(df["item_id"].to_numpy()[order]).astype(np.int32)
    users, starts = np.unique(users_sorted, return_index=True)
    offsets = np.append(starts, len(users_sorted)).astype(np.int64)
    return Sequences(users, offsets, items)


def eval_pairs(seqs: Sequences, max_len: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Evaluation inputs (history minus last item, most recent ``max_len``) and targets (last item)."""
    inputs, targets, _ = eval_points(seqs, max_len, last=1)
    return inputs, targets


def eval_points(seqs: Sequences, max_len: int, last: int = 1) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The last ``last`` next-item predictions of every sequence: inputs (the items before the
    target, most recent ``max_len``), targets, and the sequence index each point belongs to.

    Why more than one: with a few hundred test users the last item alone gives a few dozen hits, too
    few to measure a metric's change to a few points (the steering evaluation uses ``last`` > 1).
    A sequence's points come oldest first, so its last point is :func:`eval_pairs`'s; every input
    keeps at least one item, so a sequence of n items gives at most n - 1 points.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    inputs, targets, owner = [], [], []
    for i in range(len(seqs)):
        s = seqs.get(i)
        for p in range(max(len(s) - last, 1), len(s)):
            inputs.append(s[:p][-max_len:])
            targets.append(s[p])
            owner.append(i)
    return inputs, np.asarray(targets, dtype=np.int64), np.asarray(owner, dtype=np.int64)
