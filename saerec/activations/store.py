"""Reading the activation shards (``RUN/activations/<part>/*.parquet``) without Ray.

The SAE normalisation pass, the SAE metrics and interpretation all stream the same shards; this
is the one place that knows their layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch


def to_tensor(col) -> torch.Tensor:
    """An activation column -> (N, d) float32 tensor.

    Ray Data writes a fixed-shape tensor extension, or a (large_)list of equal-length rows,
    depending on the block; all of them are accepted.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if hasattr(arr, "to_numpy_ndarray"):                     # Arrow / Ray fixed-shape tensor extension
        return torch.from_numpy(np.ascontiguousarray(arr.to_numpy_ndarray(), dtype=np.float32))
    storage = arr.storage if hasattr(arr, "storage") else arr
    if len(storage) == 0:
        return torch.zeros(0, 0)
    flat = np.asarray(storage.flatten(), dtype=np.float32)
    return torch.from_numpy(flat.reshape(len(storage), -1).copy())


def count_rows(folder: str | Path) -> int:
    """Rows in every shard of ``folder``, from the Parquet footers (no data read): a progress total."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(Path(folder).glob("*.parquet")))


def iter_batches(folder: str | Path, columns: Sequence[str] = ("activation",),
                 batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of every shard in ``folder``, in file order (memory bounded by ``batch_rows``)."""
    for f in sorted(Path(folder).glob("*.parquet")):
        yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=list(columns))
