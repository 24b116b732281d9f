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


def new_users_cut(interactions: pd.DataFrame, test_fraction: float) -> int:
    """RePlay NewUsersSplitter's cut time: latest start date with >= test_fraction of users at or after it."""
    start = interactions.groupby("user_id")["timestamp"].min()
    counts = start.value_counts().sort_index(ascending=False)   # by start date, newest first
    cum = counts.cumsum()
    eligible = cum[cum >= test_fraction * len(start)]
    if eligible.empty:
        raise DataError("split: not enough users for a test set")
    return int(eligible.index.max())


def split(interactions: pd.DataFrame, cfg: SplitConfig) -> Split:
    if not 0 < cfg.test_fraction < 1 or not 0 < cfg.sae_fraction < 1:
        raise DataError("split: test_fraction and sae_fraction must be in (0, 1)")
    ints = interactions.reset_index(drop=True)
    T = new_users_cut(ints, cfg.test_fraction)
    start = ints.groupby("user_id")["timestamp"].transform("min")
    is_test_user = start >= T
    test = ints[is_test_user]
    train = ints[ints["timestamp"] < T]
    stats = {"users_total": int(ints["user_id"].nunique()), "interactions_total": int(len(ints)),
             "interactions_after_cut_of_train_users": int((~is_test_user & (ints["timestamp"] >= T)).sum())}

    n_per_user = train.groupby("user_id")["user_id"].transform("size")
    stats["dropped_train_users_lt2"] = int(train.loc[n_per_user < 2, "user_id"].nunique())
    train = train[n_per_user >= 2]

    cold = ~test["item_id"].isin(train["item_id"].unique())
    stats["dropped_test_cold_interactions"] = int(cold.sum())
    test = test[~cold]
    n_test = test.groupby("user_id")["user_id"].transform("size")
    stats["dropped_test_users_lt2"] = int(test.loc[n_test < 2, "user_id"].nunique())
    test = test[n_test >= 2]

    users = np.sort(train["user_id"].unique())
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(users)
    n_sae = int(round(cfg.sae_fraction * len(users)))
    sae_users = np.sort(perm[:n_sae])
    part = np.where(train["user_id"].isin(sae_users), "sae", "rec")
    train = train.assign(part=part)
    test = test.assign(part="test")
    out = pd.concat([train, test], ignore_index=True)
    out["part"] = pd.Categorical(out["part"], categories=list(PARTS))
    if len(sae_users) == 0 or len(users) - len(sae_users) == 0 or test.empty:
        raise DataError(f"split: a part is empty (rec users {len(users) - len(sae_users)}, "
                        f"sae users {len(sae_users)}, test users {test['user_id'].nunique()}); need more data")
    val_users = np.sort(rng.permutation(sae_users)[: cfg.val_users])
    for p in PARTS:
        sub = out[out["part"] == p]
        stats[f"{p}_users"] = int(sub["user_id"].nunique())
        stats[f"{p}_interactions"] = int(len(sub))
        stats[f"{p}_items"] = int(sub["item_id"].nunique())
    stats["val_users_count"] = int(len(val_users))
    stats["config"] = asdict(cfg)
    log.info("split: cut time %d; rec %d users, sae %d users, test %d users; dropped %s", T,
             stats["rec_users"], stats["sae_users"], stats["test_users"],
             {k: v for k, v in stats.items() if k.startswith("dropped")})
    return Split(out, T, val_users, stats)
