"""GPTRec's blocks as TorchScript traces, for serving one request at a time.

A lone request's forward pass is about a hundred tiny tensor operations, and on CPU their Python and
dispatch overhead costs more than their arithmetic. Tracing each block (``forward`` and
``forward_last``) replays the same operations from a graph without Python in between, while the
model around the blocks stays eager: interventions and SAE splices between blocks work as before.
Inference only (eval mode, no gradients). The traces are checked against the eager blocks on
several batch shapes; if any output differs, the eager blocks stay.
"""

from __future__ import annotations

import logging
import warnings

import torch

from .gptrec import Block, GPTRec

log = logging.getLogger("saerec.model")

# (batch, length) shapes the traces are checked on: one user, a padded batch, the longest history
CHECK_SHAPES = ((1, 7), (3, 23), (2, 200), (5, 1))


def _examples(model: GPTRec, B: int, T: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    T = min(T, model.cfg.max_len)
    x = torch.randn(B, T, model.cfg.d_model, generator=gen)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    return x, lengths


class TracedBlock(torch.nn.Module):
    """A block whose ``forward`` and ``forward_last`` run its trace; its eager parts stay reachable
    (``ln1``, ``attn``, ``ln2``, ``mlp``) for the last-step replay, which calls them one by one."""

    def __init__(self, block: Block, traced: torch.jit.ScriptModule):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = block.ln1, block.attn, block.ln2, block.mlp
        self.traced = traced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.traced(x)

    def forward_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.traced.forward_last(x, lengths)


@torch.no_grad()
def trace_blocks(model: GPTRec) -> bool:
    """Replace ``model.blocks`` by traced copies (in place) if they match the eager blocks exactly.

    Returns whether the traces are in use. The model must stay in eval mode afterwards. Other
    architectures have no traced fast path: they stay eager (False).
    """
    if not isinstance(model, GPTRec):
        return False
    model.eval()
    gen = torch.Generator().manual_seed(0)
    x, lengths = _examples(model, 2, 16, gen)
    traced = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # TracerWarnings about shapes read as Python ints
        for blk in model.blocks:
            traced.append(torch.jit.trace_module(blk, {"forward": (x,), "forward_last": (x, lengths)},
                                                 check_trace=False))
    for B, T in CHECK_SHAPES:
        x, lengths = _examples(model, B, T, gen)
        for blk, tr in zip(model.blocks, traced):
            if not (torch.equal(tr(x), blk(x)) and torch.equal(tr.forward_last(x, lengths), blk.forward_last(x, lengths))):
                log.warning("traced blocks differ from the eager ones at batch %d x %d: serving eager", B, T)
                return False
    model.blocks = torch.nn.ModuleList(TracedBlock(b, t) for b, t in zip(model.blocks, traced))
    return True
