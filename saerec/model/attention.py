"""Scaled dot-product attention that stays fp32 under CPU autocast.

Why: on the CPU, bf16 autocast makes the matrix products faster (AMX / AVX-512 bf16) but PyTorch's
CPU flash-attention backward is far slower in bf16 than in fp32: over five GPTRec training steps on
ML-1M it took 180 ms against 37 ms, more than the whole step's bf16 gain on the matrix products
(``benchmarks/precision_ab.py``, docs/benchmarks.md "Mixed precision"). So under CPU autocast the
attention itself runs in fp32 (its inputs cast up, autocast off inside), and every projection
around it still runs in bf16. On a GPU, and without autocast, this is plain
``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw) -> torch.Tensor:
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kw)
    return F.scaled_dot_product_attention(q, k, v, **kw)
