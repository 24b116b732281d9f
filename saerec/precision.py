"""Mixed precision: which dtype the matrix products of training and inference run in.

``precision: auto`` (the default of ``train.precision`` and ``sae_train.precision``) means bf16 on a
GPU, where tensor cores make it several times faster at no measured loss, and fp32 on a CPU: there
bf16 matmuls are faster, but the rest of a step (layer norms, softmax, optimizer, the casts
themselves) is not. With the attention kept fp32 (``saerec/model/attention.py``) GPTRec trained at
1.07x fp32's speed on ML-1M with one of three seeds clearly worse, and the TopK SAE at 0.93x: too
little to change the default (docs/benchmarks.md, "Mixed precision"). ``bf16`` forces autocast on
either device.

It covers *training* steps only. Rankings (validation, evaluation, the later stages, serving) stay
fp32: bf16 scores reorder top-10 lists (on the ML-1M GPTRec, 42% of test users got the identical
list under bf16 autocast, 87% the same set), which would make metrics incomparable across
precisions. ``recommend(dtype=torch.bfloat16)`` is there for throughput measurements.

Autocast keeps weights, optimizer state, losses and reductions in fp32; bf16 has fp32's exponent
range, so no loss scaling is needed (unlike fp16, which saerec does not offer).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]


def compute_dtype(precision: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None for plain fp32."""
    kind = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and kind == "cuda"):
        return torch.bfloat16
    if precision in ("auto", "fp32"):
        return None
    raise ValueError(f"precision: {precision!r} is not one of 'auto', 'fp32', 'bf16'")


def autocast(dtype: torch.dtype | None, device: torch.device | str = "cpu"):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; with None, autocast switched *off*, so
    an fp32 pass stays fp32 even when a caller's code runs it inside an autocast region (on the
    ML-1M GPTRec an ambient bf16 autocast left 45% of test users' top-10 lists unchanged)."""
    kind = torch.device(device).type
    if dtype is None:
        return torch.autocast(device_type=kind, enabled=False) if kind in ("cpu", "cuda") else contextlib.nullcontext()
    return torch.autocast(device_type=kind, dtype=dtype)


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host batch onto ``device``: pinned and non-blocking on a GPU (the copy overlaps the
    previous step's kernels), a no-op on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)
