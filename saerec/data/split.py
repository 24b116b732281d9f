"""The paper's split, as the authors' code does it with RePlay.

1. ``NewUsersSplitter(test_size=0.1, drop_cold_items=True)``: users are ordered by their first
   interaction; the cut time ``T`` is the latest first-interaction time such that the users who
   started at or after ``T`` are at least 10% of all users. Test = the full histories of those users;
   train = every interaction before ``T`` (of the other users, by construction).
2. Train users with fewer than 2 interactions are dropped.
3. Test interactions with items unseen in train are dropped (cold items), then test users with
   fewer than 2 interactions (nothing to predict from).
4. ``ColdUserRandomSplitter(test_size=0.4, seed)``: train users split 60/40 at random into the
   recommender part (``rec``) and the SAE part (``sae``).
5. Validation for early stopping: the last item of (a sample of) SAE-part users.

Test evaluation input = a test user's history minus its last item; target = the last item.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..config import SplitConfig
from ..errors import DataError

log = logging.getLogger("saerec.data")

PARTS = ("rec", "sae", "test")


@dataclass
class Split:
    """One table with a ``part`` column (rec / sae / test) plus what the split decided."""

    interactions: pd.DataFrame            # user_id, item_id, timestamp, [rating], part
    cut_time: int
    val_users: np.ndarray                 # SAE-part users whose last item validates the recommender
    stats: dict = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        return self.interactions[self.interactions["part"] == name]

    def train(self) -> pd.DataFrame:
        return self.interactions[self.interactions["part"] != "test"]

    def meta(self) -> dict:
        return {**self.stats, "cut_time": int(self.cut_time), "val_users": [int(u) for u in self.val_users]}


def check_fractions(cfg: SplitConfig) -> None:
    if not 0 < cfg.test_fraction < 1 or not 0 < cfg.sae_fraction < 1:
        raise DataError("split: test_fraction and sae_fraction must be in (0, 1)")


def cut_time(start: pd.Series, test_fraction: float) -> int:
    """RePlay NewUsersSplitter's cut time from each user's first timestamp: the latest start date
    with >= test_fraction of users at or after it."""
    counts = start.value_counts().sort_index(ascending=False)   # by start date, newest first
    cum = counts.cumsum()
    eligible = cum[cum >= test_fraction * len(start)]
    if eligible.empty:
        raise DataError("split: not enough users for a test set")
    return int(eligible.index.max())


def new_users_cut(interactions: pd.DataFrame, test_fraction: float) -> int:
    """:func:`cut_time` of a whole in-memory log."""
    return cut_time(interactions.groupby("user_id")["timestamp"].min(), test_fraction)


class Splitter:
    """The split as global decisions over small summaries + a per-user application, so a log of any
    size is split one bucket of users at a time (:mod:`saerec.data.stream`) and an in-memory log is
    the same code with one bucket (:func:`split`).

    Protocol: ``observe`` every chunk of the log (any order; O(users) summary) -> ``scan`` every
    bucket (train rows: the train item set and the train users) -> ``decide`` (the seeded 60/40
    permutation, the validation users) -> ``apply`` every bucket (its rows with their ``part``,
    sorted by user and time keeping source order among equal timestamps) -> ``finish`` (stats).
    A bucket must hold *all* rows of its users and a ``_row`` column (position in the source).
    """

    def __init__(self, cfg: SplitConfig):
        check_fractions(cfg)
        self.cfg = cfg
        self.users: pd.DataFrame | None = None        # user_id -> start (first timestamp), n (rows)
        self.rows = 0
        self.T: int | None = None
        self._train_items: list[np.ndarray] = []
        self._train_users: list[np.ndarray] = []
        self.stats = {"interactions_after_cut_of_train_users": 0, "dropped_train_users_lt2": 0,
                      "dropped_test_cold_interactions": 0, "dropped_test_users_lt2": 0}
        self.part_users = dict.fromkeys(PARTS, 0)
        self.part_rows = dict.fromkeys(PARTS, 0)
        self.part_items = {p: np.zeros(0, np.int64) for p in PARTS}
        self.rec_counts = pd.Series(dtype=np.int64)     # item_id -> interactions in the rec part

    # ---------------------------------------------------------------- pass over the source
    def observe(self, chunk: pd.DataFrame) -> None:
        g = chunk.groupby("user_id")["timestamp"].agg(start="min", n="size")
        self.users = g if self.users is None else \
            pd.concat([self.users, g]).groupby(level=0).agg({"start": "min", "n": "sum"})
        self.rows += len(chunk)

    def cut(self) -> int:
        if self.T is None:
            start = self.users["start"] if self.users is not None else pd.Series(dtype=np.int64)
            self.T = cut_time(start, self.cfg.test_fraction)
        return self.T

    # ---------------------------------------------------------------- passes over the buckets
    def scan(self, bucket: pd.DataFrame) -> None:
        """Train rows of a bucket: which users keep >= 2 of them, and which items they hold."""
        T = self.cut()
        start = bucket.groupby("user_id")["timestamp"].transform("min")
        self.stats["interactions_after_cut_of_train_users"] += int(((start < T) & (bucket["timestamp"] >= T)).sum())
        train = bucket[bucket["timestamp"] < T]
        n = train.groupby("user_id")["user_id"].transform("size")
        self.stats["dropped_train_users_lt2"] += int(train.loc[n < 2, "user_id"].nunique())
        train = train[n >= 2]
        self._train_items.append(train["item_id"].unique())
        self._train_users.append(train["user_id"].unique())

    def decide(self) -> None:
        self.train_items = np.unique(np.concatenate(self._train_items or [np.zeros(0, np.int64)]))
        users = np.sort(np.concatenate(self._train_users or [np.zeros(0, np.int64)]))
        self._train_items = self._train_users = []
        self.rng = np.random.default_rng(self.cfg.seed)
        perm = self.rng.permutation(users)
        self.n_train_users = len(users)
        self.sae_users = np.sort(perm[: int(round(self.cfg.sae_fraction * len(users)))])

    def apply(self, bucket: pd.DataFrame) -> pd.DataFrame:
        """The bucket's rows that the split keeps, with ``part``, sorted by (user, time, source order)."""
        T = self.T
        start = bucket.groupby("user_id")["timestamp"].transform("min")
        test = bucket[start >= T]
        train = bucket[bucket["timestamp"] < T]
        train = train[train.groupby("user_id")["user_id"].transform("size") >= 2]
        cold = ~test["item_id"].isin(self.train_items)
        self.stats["dropped_test_cold_interactions"] += int(cold.sum())
        test = test[~cold]
        n_test = test.groupby("user_id")["user_id"].transform("size")
        self.stats["dropped_test_users_lt2"] += int(test.loc[n_test < 2, "user_id"].nunique())
        test = test[n_test >= 2]
        train = train.assign(part=np.where(train["user_id"].isin(self.sae_users), "sae", "rec"))
        out = pd.concat([train, test.assign(part="test")], ignore_index=True)
        order = np.lexsort((out["_row"].to_numpy(), out["timestamp"].to_numpy(), out["user_id"].to_numpy()))
        out = out.iloc[order].reset_index(drop=True)
        out["part"] = pd.Categorical(out["part"], categories=list(PARTS))
        for p in PARTS:
            sub = out[out["part"] == p]
            self.part_users[p] += int(sub["user_id"].nunique())
            self.part_rows[p] += len(sub)
            self.part_items[p] = np.union1d(self.part_items[p], sub["item_id"].unique())
            if p == "rec":
                self.rec_counts = self.rec_counts.add(sub["item_id"].value_counts(), fill_value=0)
        return out

    def finish(self) -> tuple[int, np.ndarray, dict]:
        """(cut time, validation users, stats) once every bucket went through ``apply``."""
        n_sae = len(self.sae_users)
        if n_sae == 0 or self.n_train_users - n_sae == 0 or self.part_users["test"] == 0:
            raise DataError(f"split: a part is empty (rec users {self.n_train_users - n_sae}, "
                            f"sae users {n_sae}, test users {self.part_users['test']}); need more data")
        val_users = np.sort(self.rng.permutation(self.sae_users)[: self.cfg.val_users])
        stats = {"users_total": int(len(self.users)), "interactions_total": int(self.rows), **self.stats}
        for p in PARTS:
            stats[f"{p}_users"], stats[f"{p}_interactions"] = self.part_users[p], self.part_rows[p]
            stats[f"{p}_items"] = int(len(self.part_items[p]))
        stats["val_users_count"] = int(len(val_users))
        stats["config"] = asdict(self.cfg)
        log.info("split: cut time %d; rec %d users, sae %d users, test %d users; dropped %s", self.T,
                 stats["rec_users"], stats["sae_users"], stats["test_users"],
                 {k: v for k, v in stats.items() if k.startswith("dropped")})
        return self.T, val_users, stats


def split(interactions: pd.DataFrame, cfg: SplitConfig) -> Split:
    """The split of an in-memory log: :class:`Splitter` with one bucket. Rows come out sorted by
    user and time."""
    sp = Splitter(cfg)
    ints = interactions.reset_index(drop=True)
    ints = ints.assign(_row=np.arange(len(ints), dtype=np.int64))
    sp.observe(ints)
    sp.cut()
    sp.scan(ints)
    sp.decide()
    out = sp.apply(ints).drop(columns="_row")
    T, val_users, stats = sp.finish()
    return Split(out, T, val_users, stats)
