"""Training windows on disk: one flat int32 token file plus window offsets, written from the rec
part in bounded batches and read back one window at a time by each Ray Train worker.

Why: the driver used to build every window as a Python list of arrays and ship them all through the
object store, and every worker unpacked them into its own list, so the train stage's memory grew
with the rec part (issue 21: every stage streams). Now the driver reads the rec part 512 users at a
time (:func:`saerec.data.prepare.sequence_batches`), cuts each batch's windows exactly as
:func:`~saerec.train.batching.make_windows` does (same windows, same order) and appends them to
``tokens.i32``; it keeps only their lengths (``offsets.npy``, 8 bytes a window). A worker keeps the
offsets and reads the windows of each batch with plain reads, not a memmap (mapped pages would count
as the worker's memory, as in :mod:`saerec.sae.shard_cache`). The length-bucketed batches come
from the same lengths, so the same seed gives the same batches, losses and scores as before.

The folder lives in ``RUN/recommender/`` while training runs, where every worker of a cluster with
shared storage reads it; for a run on object storage it is pushed to the run's URI and each worker
copies it to its node's temp folder first. It is deleted when training ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data.sequences import Sequences, offsets_of
from .batching import make_windows

TOKENS, OFFSETS = "tokens.i32", "offsets.npy"


def write_windows(batches: Iterable[Sequences], folder: str | Path, max_len: int, mode: str,
                  n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Append each batch's windows (``make_windows(batch, max_len, mode)``) to ``folder/tokens.i32``
    (little-endian int32) and write ``folder/offsets.npy``; returns the window offsets and the batches'
    item counts (``np.bincount`` over dense indices 0..``n_items``, for in-batch negatives' log_q).
    Memory: one batch of windows, the offsets and the counts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lengths, counts = [np.zeros(0, np.int64)], np.zeros(n_items + 1, np.int64)
    with open(folder / TOKENS, "wb") as f:
        for batch in batches:
            counts += np.bincount(batch.items, minlength=n_items + 1)
            windows = make_windows(batch, max_len, mode)
            if windows:
                f.write(np.concatenate(windows).astype("<i4", copy=False).tobytes())
            lengths.append(np.fromiter((len(w) for w in windows), np.int64, len(windows)))
    offsets = offsets_of(np.concatenate(lengths))
    np.save(folder / OFFSETS, offsets)
    return offsets, counts


class WindowFile:
    """The windows of :func:`write_windows`, read one at a time: ``windows[i]`` is window ``i``
    (int32), as ``make_windows(...)[i]`` was; ``lengths()`` their lengths in items."""

    def __init__(self, folder: str | Path, owned: bool = False):
        self.folder, self.owned = Path(folder), owned
        self.offsets = np.load(self.folder / OFFSETS)
        self._fd = os.open(self.folder / TOKENS, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i) -> np.ndarray:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        raw = os.pread(self._fd, 4 * (hi - lo), 4 * lo)
        if len(raw) != 4 * (hi - lo):
            raise RuntimeError(f"{self.folder / TOKENS}: window {i} cut short (the file was changed while training)")
        return np.frombuffer(raw, dtype="<i4")

    def close(self) -> None:
        """Close the file; a node-local copy (``owned``) is deleted."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)


def open_windows(location: str) -> WindowFile:
    """A worker's :class:`WindowFile`: ``location`` is a folder, or the URI of one (a run on object
    storage), copied first to a temp folder on this node."""
    from ..storage import is_uri

    if not is_uri(location):
        return WindowFile(location)
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(location)
    local = Path(tempfile.mkdtemp(prefix="saerec-windows-"))
    try:
        for name in (TOKENS, OFFSETS):
            with fs.open_input_stream(f"{base}/{name}") as src, open(local / name, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        return WindowFile(local, owned=True)
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
