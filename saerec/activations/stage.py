"""The extract stage: RUN/recommender + RUN/data -> RUN/activations/{sae,test}/.

Ray Data streams the SAE users' and the test users' sequences through the recommender and writes
the hidden state at ``activations.layer`` of every position as Parquet shards (``ray_extract.py``).
"""

from __future__ import annotations

import time

from ..config import RunConfig
from ..contract import Stage
from ..rundir import A, RunDir


def extract_stage(run: RunDir, cfg: RunConfig, parts=("sae", "test")) -> dict:
    """Extract every part; returns seconds per part and records the layer in ``activations/meta.json``
    (the SAE stage re-extracts when the configured layer differs). The meta file holds no timings:
    later stages' keys hash it, and re-extracting the same recommender must not change them."""
    from .ray_extract import extract

    out = {}
    for part in parts:
        t = time.time()
        extract(run, part, cfg.activations)
        out[part] = time.time() - t
    run.write_json(A.ACT_META, {"layer": cfg.activations.layer, "parts": list(parts)})
    return out


STAGE = Stage("extract", ("activations",), (A.WEIGHTS, A.SEQUENCES), (A.ACT_META,), extract_stage)
