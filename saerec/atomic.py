"""Atomic artifact writes: a temporary file beside the target, renamed over it when complete.

Why: a stage killed mid-write (a preempted pod, Ctrl-C) or a reader that opens a file while it is
written (a Serve replica loading a run, a second `saerec` command) must never meet a torn weights
file or a half-written Parquet table. ``os.replace`` within one folder is atomic on POSIX, so a
reader sees the old file or the new one, never a mix. The temporary name keeps the target's suffix
(libraries pick formats by it) and starts with a dot (globs like ``*.parquet`` skip it).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def write_parquet(df, path: str | Path, **kwargs) -> Path:
    """A pandas DataFrame (``index=False`` unless given) or a pyarrow Table."""
    with atomic_path(path) as tmp:
        if hasattr(df, "to_parquet"):
            df.to_parquet(tmp, **{"index": False, **kwargs})
        else:
            import pyarrow.parquet as pq

            pq.write_table(df, tmp, **kwargs)
    return Path(path)


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return Path(path)
