"""The training batch's token budget per device: ``train.batch_tokens: auto`` (the default).

Why per device: on this project's 2-core CPUs 4,096 tokens per batch is the measured sweet spot
(docs/results.md: 2,048 led early and plateaued lower), while on a GPU such a batch leaves most of
the device idle: a step's cost there is mostly fixed (kernel launches, the optimizer), so tokens/s
grows with the batch until memory runs out. What fills the memory is the full-softmax loss: every
token carries a row of catalog-size logits, their fp32 log-softmax and its gradient, about
``3 * n_items * 4`` bytes, against ``~20 * d_model * 4`` bytes of saved activations per layer. So
``auto`` on a GPU takes a quarter of the device's free memory over that per-token cost, rounded down
to a power of two and kept within [4,096, 65,536]: for ML-20M's 26,744 items, 65,536 tokens with
the H200's 139 GiB free, 32,768 with 80 GiB, 16,384 with 22 GiB. The cap keeps the number of optimizer steps
per epoch from falling so far that the default learning rate no longer fits.

A number pins the budget on every device (what a reproduction across machines wants). The budget a
run trained with is written into its checkpoint state and reused on resume, so a run resumed on
another device keeps its batches.
"""

from __future__ import annotations

import torch

CPU_TOKENS = 4096
GPU_MIN_TOKENS, GPU_MAX_TOKENS = 4096, 65536
GPU_MEMORY_SHARE = 0.25


def bytes_per_token(n_items: int, d_model: int, n_layers: int, loss: str = "ce", num_negatives: int = 1024) -> int:
    """Estimated training memory per token: the loss's per-token logits (fp32 log-softmax and its
    gradient beside the logits) plus the activations each layer saves for the backward pass.

    >>> bytes_per_token(26_744, 64, 3)
    336288
    >>> bytes_per_token(26_744, 64, 3, loss="bce")
    15384
    """
    classes = {"ce": n_items, "sampled": num_negatives + 1, "bce": 2}[loss]
    return 3 * classes * 4 + 20 * d_model * n_layers * 4


def gpu_tokens(free_bytes: int, per_token: int) -> int:
    """A quarter of ``free_bytes`` over ``per_token``, as a power of two within the GPU bounds.

    >>> [gpu_tokens(g * 2**30, 336_288) for g in (139, 80, 22, 1)]
    [65536, 32768, 16384, 4096]
    """
    fit = int(GPU_MEMORY_SHARE * free_bytes // max(per_token, 1))
    tokens = 1 << max(fit, 1).bit_length() - 1
    return max(GPU_MIN_TOKENS, min(GPU_MAX_TOKENS, tokens))


def batch_tokens_for(tc, mc, n_items: int, device: torch.device | str) -> int:
    """The training budget of a :class:`~saerec.config.TrainConfig` ``tc`` for a model ``mc`` over
    ``n_items`` on ``device``: ``tc.batch_tokens`` itself when it is a number; for ``auto``,
    :data:`CPU_TOKENS` on a CPU and :func:`gpu_tokens` of the device's free memory on a GPU.

    >>> from saerec.config import ModelConfig, TrainConfig
    >>> batch_tokens_for(TrainConfig(batch_tokens=2048), ModelConfig(), 26_744, "cuda")
    2048
    >>> batch_tokens_for(TrainConfig(), ModelConfig(), 26_744, "cpu")
    4096
    """
    if tc.batch_tokens != "auto":
        return int(tc.batch_tokens)
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_TOKENS
    free, _ = torch.cuda.mem_get_info(device)
    return gpu_tokens(free, bytes_per_token(n_items, mc.d_model, mc.n_layers, tc.loss, tc.num_negatives))
