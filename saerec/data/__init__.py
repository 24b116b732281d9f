"""Data stage: load interaction logs and item attributes, split them as the paper does.

- ``loaders``: GroupLens folders (ml-1m, ml-20m / ml-latest-small, ml-100k) and the generic Parquet schema
- ``download``: named GroupLens datasets with md5 check and a cache; a local folder always wins
- ``attributes``: genres multi-hot, year, decade, popularity bucket
- ``synthetic``: logs with planted genres for tests and scale runs
- ``split``: test = most recent new users; train users 60/40 (recommender / SAE)
- ``chunks`` and ``stream``: the data stage with bounded memory (sources in chunks, buckets of users)
- ``sequences``: dense item indices and per-user sequences for the model
"""

from .schema import Dataset  # noqa: F401
