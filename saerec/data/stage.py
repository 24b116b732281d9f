"""The data stage: the dataset (downloaded, local folder or synthetic) -> RUN/data/.

Loads and filters the log, applies the paper's split (rec / sae / test users, time cut) and derives
the item attributes (genres, decade, popularity bucket) that interpretation and steering use.
"""

from __future__ import annotations

from ..config import RunConfig
from ..contract import Stage
from ..rundir import A, RunDir

OUTPUTS = (A.INTERACTIONS, A.SEQUENCES, A.ITEMS, A.SPLIT)


def run_data(run: RunDir, cfg: RunConfig) -> dict:
    from dataclasses import asdict

    from .prepare import config_hash
    from .stream import stream_data

    meta, report = stream_data(run, cfg, config_hash(cfg))
    return {**{k: v for k, v in meta.items() if k != "val_users"}, "streaming": asdict(report)}


# inputs: the dataset's own files, which the pipeline hashes itself (saerec.pipeline.data_source)
STAGE = Stage("data", ("data", "split"), (), OUTPUTS, run_data)
