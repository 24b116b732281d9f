"""GPTRec's scoring pass through ``torch.compile``: an opt-in for serving.

Why: a lone request is about a hundred and fifty small tensor operations, and on a CPU the dispatch
between them costs about as much as their arithmetic. Tracing the blocks (:mod:`.traced`) removes
the Python between them; compiling with inductor goes further and fuses the whole pass, from item
ids to the masked item scores, into a few generated C++ loops. ``benchmarks/serve_latency.py
--compile`` measures what it buys behind Serve.

A request without edits runs one compiled graph. A steered request runs two more, split at the
steering layer: the *head* (embeddings and the blocks before the layer, every position) and the
*tail* (the remaining blocks, the last one shortened to the last position, the final LayerNorm and
the scores), with the edit of the layer's state run eagerly between them. (Each compiled call has
its own fixed cost, which is why the unsteered path is not head + tail.) Edits anywhere else run
eagerly. Whether seen items are excluded is a tensor argument, so one graph serves both settings.

Costs: compiling takes tens of seconds when a replica starts (done at load on the shapes below,
so no request waits for it), and fused kernels round floats differently from eager ones: scores
agree to about 1e-5, not bit for bit. Every graph is checked against the eager pass at load; if
any differs by more than :data:`TOLERANCE`, the eager pass stays.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch

from .gptrec import GPTRec, Intervention, apply_intervention, mask_seen

log = logging.getLogger("saerec.model")

# (batch, length) shapes compiled and checked at load: torch.compile specialises sizes 0 and 1,
# so a lone request, a one-item history and batches each get their own graph before serving starts
WARM_SHAPES = ((1, 7), (1, 1), (3, 23), (4, 1), (2, 200), (1, 130))
TOLERANCE = 1e-4


class CompiledScores:
    """``GPTRec.last_scores`` from compiled graphs: the whole pass, and its two halves split at
    ``layer`` for edits of that layer. Installed as ``model.compiled`` by :func:`compile_scores`."""

    def __init__(self, model: GPTRec, layer: str):
        self.model, self.layer = model, layer
        n = model._start_block(layer)              # blocks before the layer's state
        self.split = split = min(n, len(model.blocks) - 1)
        self.steers_between = n == split            # the layer's state lies between the halves

        def tail(x, items, lengths, exclude):
            return mask_seen(model.scores(model.suffix_last(x, lengths, split)), items, exclude)

        self.whole = torch.compile(lambda items, lengths, exclude: tail(model.prefix(items, split), items, lengths, exclude),
                                   dynamic=True)
        self.head = torch.compile(lambda items: model.prefix(items, split), dynamic=True)
        self.tail = torch.compile(tail, dynamic=True)

    def __call__(self, items: torch.Tensor, lengths: torch.Tensor,
                 interventions: Mapping[str, Intervention] | None = None,
                 exclude_seen: bool = True) -> torch.Tensor | None:
        """Masked scores (B, V), or None for edits it does not take (the caller runs the eager pass)."""
        exclude = torch.tensor(bool(exclude_seen))
        if not interventions:
            return self.whole(items, lengths, exclude)
        if set(interventions) != {self.layer} or not self.steers_between:
            return None
        x = apply_intervention(self.head(items), interventions[self.layer], lengths)
        return self.tail(x, items, lengths, exclude)

    def max_difference(self, B: int, T: int, gen: torch.Generator) -> float:
        """Largest absolute difference from the eager pass (whole and halves) on random histories (B, T)."""
        m = self.model
        T = min(T, m.cfg.max_len)
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = T
        items = torch.randint(1, m.n_items + 1, (B, T), generator=gen)
        items[torch.arange(T)[None, :] >= lengths[:, None]] = 0
        x = m.prefix(items, self.split)
        worst = (self.head(items) - x).abs().max().item()
        for exclude in (True, False):
            want = m.scores(m.suffix_last(x, lengths, self.split))
            want = mask_seen(want, items) if exclude else want
            flag = torch.tensor(exclude)
            for got in (self.whole(items, lengths, flag), self.tail(x, items, lengths, flag)):
                if not torch.equal(got.isinf(), want.isinf()):
                    return float("inf")
                worst = max(worst, (got - want)[want.isfinite()].abs().max().item())
        return worst


@torch.inference_mode()
def compile_scores(model: GPTRec, layer: str) -> bool:
    """Install the compiled pass as ``model.compiled`` if it matches the eager one.

    Compiles on :data:`WARM_SHAPES` now. Returns whether the compiled pass is in use; the model must
    stay in eval mode, and be called under ``torch.inference_mode`` (as the recommenders do), since
    the graphs are compiled for it.
    """
    model.eval()
    model.compiled = None
    compiled = CompiledScores(model, layer)
    gen = torch.Generator().manual_seed(0)
    try:
        worst = max(compiled.max_difference(B, T, gen) for B, T in WARM_SHAPES)
    except Exception as e:                      # no C++ compiler, an unsupported platform, ...
        log.warning("torch.compile failed (%s: %s): serving the eager model", type(e).__name__, e)
        return False
    if worst > TOLERANCE:
        log.warning("the compiled pass differs from the eager one by %.2g: serving the eager model", worst)
        return False
    model.compiled = compiled
    return True
