"""Hand freed memory back to the OS between the batches of a long streamed pass.

Why: glibc's malloc raises its mmap threshold each time a large buffer is freed (up to 32 MB), so
later buffers below it are carved from the heap, and a pass whose batches vary in shape (batches by
length, scores over the catalogue) leaves the heap fragmented: the process grows with the number
of batches although each holds the same. Scoring 13,849 test users on the 20M-interaction log
(``downstream_metrics`` of the SAE stage) peaked at 2,207 MB against 1,617 MB for 1,385 users at 2M,
and at 1,735 MB with a trim between batches (docs/benchmarks.md). Arrow's pool keeps freed memory
too. A trim walks the whole heap: well under a millisecond on small heaps, about 30 ms on the
20M-interaction evaluation's (docs/benchmarks.md), so callers do it every few batches.
"""

from __future__ import annotations

import ctypes

import pyarrow as pa

try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _TRIM = _LIBC.malloc_trim
except (OSError, AttributeError):              # not glibc: nothing to trim
    _TRIM = None


def release_memory() -> None:
    """Return the free pages of Arrow's pool and of glibc's heap to the OS."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)


def every(n: int):
    """``tick()`` that releases memory on every ``n``-th call (a batch loop's cadence)."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] % n == 0:
            release_memory()

    return tick
