"""A synthetic log shaped like MovieLens-20M, the paper's dataset (``data.synthetic_preset: ml-20m``).

ML-20M itself may not be redistributed and is too slow to train on for every scale check, so this
generator reproduces its *shape*: 138,493 users, 26,744 rated items, about 20M interactions; every
user with at least 20 of them and a long-tailed spread (median 68, mean 144, longest 9,254);
a long-tailed item popularity (log-normal weights, the head capped at ML-20M's most rated share); ML-20M's genre and
decade frequencies (counted from its ``movies.csv``). And it plants ground truth for interpretation
and steering, as the small generator does: users prefer a few genres and drift to another mix, the
next pick tends to stay in the current genre, and users also prefer one decade (a share
``decade_affinity`` of their picks come from it, within the current genre).

Sizes scale by users (``ml20m(scale=0.1)`` keeps the 26,744-item catalog and has about 2M
interactions). Users are generated in chunks of ``chunk_users`` with ragged (CSR) arrays: the
longest history costs no padding, and memory is bounded by one chunk whatever the total. Output is
deterministic for a given config (the chunk size is part of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# ML-20M's movies.csv (27,278 movies): movies per genre and per release decade
ML20M_GENRES = {
    "Drama": 13344, "Comedy": 8374, "Thriller": 4178, "Romance": 4127, "Action": 3520, "Crime": 2939,
    "Horror": 2611, "Documentary": 2471, "Adventure": 2329, "Sci-Fi": 1743, "Mystery": 1514, "Fantasy": 1412,
    "War": 1194, "Children": 1139, "Musical": 1036, "Animation": 1027, "Western": 676, "Film-Noir": 330,
    "IMAX": 196,
}
ML20M_DECADES = {1890: 14, 1900: 8, 1910: 97, 1920: 319, 1930: 929, 1940: 1067, 1950: 1369, 1960: 1661,
                 1970: 2020, 1980: 2653, 1990: 4372, 2000: 7875, 2010: 4871}
ML20M_USERS, ML20M_ITEMS = 138_493, 26_744


@dataclass
class PaperShapeConfig:
    users: int = ML20M_USERS
    items: int = ML20M_ITEMS
    min_len: int = 20                 # ML-20M: every user rated at least 20 movies
    median_len: float = 68.0          # user history lengths: min_len + a log-normal excess
    mean_len: float = 144.0
    max_len: int = 9_254
    popularity_sigma: float = 3.3     # item weights log-normal (ML-20M: mean 748 ratings per item, median about 18)
    popularity_cap: float = 0.0034    # no item's weight above this share (ML-20M's most rated: 67,310 of 20M)
    stickiness: float = 0.7           # chance the next item stays in the current genre
    concentration: float = 0.3        # Dirichlet alpha of user genre preferences
    decade_affinity: float = 0.3      # share of picks from the user's preferred decade (within the genre)
    extra_genres: float = 1.0         # mean number of genres an item carries besides its primary one
    span_years: float = 20.0          # users join over this many years
    overdraw: float = 0.6             # extra picks drawn so that histories keep their length after de-duplication
    chunk_users: int = 10_000
    seed: int = 0

    @classmethod
    def ml20m(cls, scale: float = 1.0, seed: int = 0) -> "PaperShapeConfig":
        """ML-20M's shape with ``scale`` times its users (0.1: about 2M interactions)."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        return cls(users=max(1, round(ML20M_USERS * scale)), seed=seed)


def _lengths(cfg: PaperShapeConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """min_len + log-normal excess with the configured median and mean, capped at max_len."""
    med, mean = cfg.median_len - cfg.min_len, cfg.mean_len - cfg.min_len
    sigma = np.sqrt(2 * np.log(max(mean / med, 1.0)))
    excess = rng.lognormal(np.log(med), sigma, size=n)
    return np.minimum(cfg.min_len + np.floor(excess).astype(np.int64), cfg.max_len)


def make_paper_items(cfg: PaperShapeConfig, rng: np.random.Generator):
    """Items with ML-20M's genre and decade frequencies; returns (items frame, primary genre,
    decade index, popularity weight)."""
    names = list(ML20M_GENRES)
    gp = np.array(list(ML20M_GENRES.values()), dtype=np.float64)
    gp /= gp.sum()
    decades = np.array(list(ML20M_DECADES))
    dp = np.array(list(ML20M_DECADES.values()), dtype=np.float64)
    dp /= dp.sum()
    primary = rng.choice(len(names), size=cfg.items, p=gp)
    n_extra = np.minimum(rng.poisson(cfg.extra_genres, size=cfg.items), 3)
    extra = rng.choice(len(names), size=(cfg.items, 3), p=gp)
    decade = rng.choice(len(decades), size=cfg.items, p=dp)
    years = decades[decade] + np.minimum(rng.integers(0, 10, size=cfg.items), np.where(decades[decade] == 2010, 5, 9))
    genres = []
    for p, k, ex in zip(primary, n_extra, extra):
        gs = [names[p]]
        for e in ex[:k]:
            if names[e] not in gs:
                gs.append(names[e])
        genres.append(gs)
    weight = np.exp(cfg.popularity_sigma * rng.standard_normal(cfg.items))
    weight = np.minimum(weight / weight.sum(), cfg.popularity_cap)
    items = pd.DataFrame({
        "item_id": np.arange(1, cfg.items + 1, dtype="int64"),
        "title": [f"Item {i} ({y})" for i, y in zip(range(1, cfg.items + 1), years)],
        "genres": genres,
        "year": pd.array(years, dtype="Int64"),
    })
    return items, primary, decade, weight


def _block_sampler(primary: np.ndarray, decade: np.ndarray, weight: np.ndarray, G: int, D: int):
    """One concatenated CDF over blocks: block g = genre g's items, block G + g*D + d = genre g's
    items of decade d. Block b's values lie in (b, b + 1], so ``searchsorted(cdf, b + r, 'right')``
    samples block b by weight with one call for any mix of blocks. Returns (cdf, item per slot,
    block non-empty mask)."""
    keys = [primary == g for g in range(G)] + [(primary == g) & (decade == d) for g in range(G) for d in range(D)]
    cdfs, members, nonempty = [], [], np.zeros(len(keys), dtype=bool)
    for b, m in enumerate(keys):
        ix = np.flatnonzero(m)
        if not len(ix):
            continue
        c = np.cumsum(weight[ix])
        c = c / c[-1]
        c[-1] = 1.0
        cdfs.append(b + c)
        members.append(ix)
        nonempty[b] = True
    return np.concatenate(cdfs), np.concatenate(members), nonempty


def _paper_chunk(cfg, rng, sampler, G, D, dp, user_ids, t0) -> pd.DataFrame:
    cdf, slot_item, nonempty = sampler
    n = len(user_ids)
    # sparse preferences whose mean is each genre's share of ML-20M's movies (Drama is common, IMAX rare)
    gp = np.array(list(ML20M_GENRES.values()), dtype=np.float64)
    alpha = np.maximum(cfg.concentration * G * gp / gp.sum(), 1e-3)
    target = _lengths(cfg, rng, n)
    # long histories repeat more picks (their genres' heads), so they draw more extra picks
    draws = target + np.ceil(target * cfg.overdraw * (1 + np.log(target / cfg.min_len))).astype(np.int64)
    order = np.argsort(-draws, kind="stable")                 # longest first: step t's users are a prefix
    draws, target, user_ids, t0 = draws[order], target[order], user_ids[order], t0[order]
    offsets = np.concatenate([[0], np.cumsum(draws)])
    active = np.searchsorted(-draws, -np.arange(int(draws[0])), side="left")   # users with draws > t
    pref0 = rng.dirichlet(alpha, size=n)
    pref1 = rng.dirichlet(alpha, size=n)
    user_decade = rng.choice(D, size=n, p=dp)
    genre = (rng.random(n)[:, None] > np.cumsum(pref0, axis=1)).sum(axis=1).clip(0, G - 1)
    flat = np.empty(int(offsets[-1]), dtype=np.int64)
    denom = np.maximum(draws - 1, 1)
    for t in range(int(draws[0])):
        a = int(active[t])
        frac = (t / denom[:a])[:, None]
        pref = (1 - frac) * pref0[:a] + frac * pref1[:a]
        switch = rng.random(a) >= cfg.stickiness
        new = (rng.random(a)[:, None] > np.cumsum(pref, axis=1)).sum(axis=1).clip(0, G - 1)
        g = np.where(switch, new, genre[:a])
        genre[:a] = g
        by_decade = G + g * D + user_decade[:a]
        block = np.where((rng.random(a) < cfg.decade_affinity) & nonempty[by_decade], by_decade, g)
        pos = np.searchsorted(cdf, block + rng.random(a), side="right").clip(0, len(cdf) - 1)
        flat[offsets[:a] + t] = slot_item[pos] + 1
    user = np.repeat(np.arange(n), draws)
    gaps = rng.integers(60, 86_400, size=len(flat)).cumsum()
    ts = t0[user] + gaps - gaps[offsets[:-1]][user]             # each user starts at its t0
    # a user rates an item once (keep the first), then keeps its first `target` distinct items
    keep = ~pd.Series(user * (cfg.items + 1) + flat).duplicated().to_numpy()
    seen = np.cumsum(keep)
    rank = seen - (seen[offsets[:-1]] - keep[offsets[:-1]])[user]      # 1-based rank among kept
    keep &= rank <= target[user]
    return pd.DataFrame({"user_id": user_ids[user][keep], "item_id": flat[keep], "timestamp": ts[keep],
                         "rating": np.float32(5.0)})


def paper_chunks(cfg: PaperShapeConfig):
    """(items, generator of interaction chunks) for :func:`saerec.data.synthetic.write_parquet`."""
    rng = np.random.default_rng(cfg.seed)
    items, primary, decade, weight = make_paper_items(cfg, rng)
    G, D = len(ML20M_GENRES), len(ML20M_DECADES)
    dp = np.array(list(ML20M_DECADES.values()), dtype=np.float64)
    dp /= dp.sum()
    sampler = _block_sampler(primary, decade, weight, G, D)
    start, span = 790_000_000, int(cfg.span_years * 365 * 86_400)    # 1995 onwards, as ML-20M
    t0_all = np.sort(rng.integers(start, start + span, size=cfg.users))

    def gen():
        for lo in range(0, cfg.users, cfg.chunk_users):
            ids = np.arange(lo + 1, min(lo + cfg.chunk_users, cfg.users) + 1, dtype=np.int64)
            yield _paper_chunk(cfg, rng, sampler, G, D, dp, ids, t0_all[lo: lo + len(ids)])
    return items, gen()
