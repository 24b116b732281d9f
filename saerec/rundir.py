"""The run directory: the one artifact layout every stage reads and writes.

```
RUN/
  config.yaml                 resolved config of the last command
  data/                       interactions.parquet (with a `part` column: rec / sae / test),
                              items.parquet (item attributes), split.json (cut time, sizes, drops)
  recommender/                model.safetensors, config.json, items.parquet (dense index <-> item id),
                              metrics.json, history.json (per epoch), ray/ (Ray Train storage)
  activations/ sae/ interpret/ steer/   later stages
  report.md
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import RunError
from .layout import A

__all__ = ["A", "RunDir", "json_ready"]          # A: the artifact names, importable beside RunDir


class RunDir:
    def __init__(self, path: str | Path):
        from .storage import attach, is_uri, remote_for

        self.root = (attach(path) if is_uri(path) else Path(path)).expanduser().resolve()
        self.remote = remote_for(self.root)          # a RemoteStore when the run lives on a URI

    def ray_path(self, rel: str) -> str:
        """Where Ray (Train checkpoints, Ray Data shards) writes ``rel``: the run's URI for a remote run
        (every node can reach it), else the local folder."""
        return self.remote.uri_of(rel) if self.remote else str(self.root / rel)

    def pull(self, rel: str = "") -> None:
        if self.remote:
            self.remote.pull(rel)

    def push(self, rel: str = "") -> None:
        if self.remote:
            self.remote.push(rel)

    # folders --------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def recommender(self) -> Path:
        return self.root / "recommender"

    def path(self, rel: str) -> Path:
        """The absolute path of an artifact (``A.*``)."""
        return self.root / rel

    def stage(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    # files ----------------------------------------------------------------
    def write_json(self, rel: str, obj: Any) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
        tmp.replace(p)
        return p

    def read_json(self, rel: str) -> Any:
        p = self.root / rel
        if not p.exists():
            raise RunError(f"{p} is missing; {_hint(rel)}")
        return json.loads(p.read_text())

    def read_parquet(self, rel: str) -> pd.DataFrame:
        p = self.root / rel
        if not p.exists():
            raise RunError(f"{p} is missing; {_hint(rel)}")
        return pd.read_parquet(p)

    def has(self, rel: str) -> bool:
        return (self.root / rel).exists()


def _hint(rel: str) -> str:
    if rel.startswith("data/"):
        return "run `saerec data --run RUN` or `saerec train --run RUN` first"
    if rel.startswith("recommender/"):
        return "run `saerec train --run RUN` first"
    return "run the stage that writes it first"


def json_ready(x):
    """JSON-ready: numpy scalars and arrays to Python, NaN and infinities to None (JSON has neither;
    ``json.dumps`` would write the invalid token ``NaN``), no rounding.

    >>> json_ready({"a": [float("nan"), 1.5], 2: True})
    {'a': [None, 1.5], '2': True}
    """
    import math

    import numpy as np
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _json_default(o):
    import numpy as np
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
