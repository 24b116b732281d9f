"""GPTRec's scoring pass through ``torch.compile``: an opt-in for serving.

Why: a lone request is about a hundred and fifty small tensor operations, and on a CPU the dispatch
between them costs about as much as their arithmetic. Tracing the blocks (:mod:`.traced`) removes
the Python between them; compiling with inductor goes further and fuses the whole pass, from item
ids to the masked item scores, into a few generated C++ loops. ``benchmarks/serve_latency.py
--compile`` measures what it buys behind Serve.

A request without edits runs one compiled graph. A steered request whose edits act on the steering
layer at the last position (the paper's steering, and the API's default) runs a second one, which
inlines the edit function between the layer and the rest of the pass; the edit's tensors (which
features, which values) are inputs of that graph, so requests with different edits share it.
Other edits (every position, another layer) run eagerly. Whether seen items are excluded is a
tensor argument, so one graph serves both settings.

Costs: compiling takes tens of seconds when a replica starts (done at load on the shapes below,
so no request waits for it), and fused kernels round floats differently from eager ones: scores
agree to about 1e-5, not bit for bit. Every graph is checked against the eager pass at load; if
any differs by more than :data:`TOLERANCE`, or compiling fails, nothing is installed (the Serve
deployment then traces the blocks instead).
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Sequence

import torch

from .gptrec import GPTRec, Intervention, Where, mask_seen

EditFactory = Callable[[int], Intervention]      # batch size -> an intervention for that many rows

log = logging.getLogger("saerec.model")

# (batch, length) shapes compiled and checked at load: torch.compile specialises sizes 0 and 1,
# so a lone request, a one-item history and batches each get their own graph before serving starts
WARM_SHAPES = ((1, 7), (1, 1), (3, 23), (4, 1), (2, 200), (1, 130))
TOLERANCE = 1e-4


class CompiledScores:
    """``GPTRec.last_scores`` from compiled graphs: the whole pass, and the pass with a last-position
    edit of ``layer``. Installed as ``model.compiled`` by :func:`compile_scores`."""

    def __init__(self, model: GPTRec, layer: str):
        self.model, self.layer = model, layer
        n = model._start_block(layer)              # blocks before the layer's state
        self.split = split = min(n, len(model.blocks) - 1)
        self.steers_between = n == split            # the layer's state lies before the last block

        self.flags = {True: torch.tensor(True), False: torch.tensor(False)}   # exclude_seen as a graph input

        def rest(x, items, lengths, exclude):       # the layer's state (every position) -> masked scores
            return mask_seen(model.scores(model.suffix_last(x, lengths, split)), items, exclude)

        def whole(items, lengths, exclude):
            return rest(model.prefix(items, split), items, lengths, exclude)

        def edited(items, lengths, exclude, fn):
            x = model.prefix(items, split)
            rows, last = torch.arange(x.shape[0]), lengths - 1
            h = fn(x[rows, last], Where(rows, last, torch.ones_like(last, dtype=torch.bool)))
            return rest(x.index_put((rows, last), h.to(x.dtype)), items, lengths, exclude)

        self.whole = torch.compile(whole, dynamic=True)
        self.edited = torch.compile(edited, dynamic=True)

    def takes(self, interventions: Mapping[str, Intervention] | None) -> bool:
        """Whether these interventions run compiled: none, or one at ``layer``'s last positions."""
        if not interventions:
            return True
        iv = interventions.get(self.layer)
        return (len(interventions) == 1 and iv is not None and self.steers_between
                and isinstance(iv.positions, str) and iv.positions == "last")

    def __call__(self, items: torch.Tensor, lengths: torch.Tensor,
                 interventions: Mapping[str, Intervention] | None = None,
                 exclude_seen: bool = True) -> torch.Tensor | None:
        """Masked scores (B, V), or None for edits it does not take (the caller runs the eager pass)."""
        if not self.takes(interventions):
            return None
        exclude = self.flags[bool(exclude_seen)]
        if not interventions:
            return self.whole(items, lengths, exclude)
        return self.edited(items, lengths, exclude, interventions[self.layer].fn)

    def max_difference(self, B: int, T: int, gen: torch.Generator, edits: EditFactory | None = None) -> float:
        """Largest absolute difference from the eager scores on random histories (B, T), with the
        intervention ``edits(B)`` (if given), for both settings of seen-item exclusion."""
        m = self.model
        T = min(T, m.cfg.max_len)
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        lengths[0] = T
        items = torch.randint(1, m.n_items + 1, (B, T), generator=gen)
        items[torch.arange(T)[None, :] >= lengths[:, None]] = 0
        ivs = {self.layer: edits(B)} if edits is not None else None
        if not self.takes(ivs):
            raise ValueError(f"the compiled pass does not take this intervention: {ivs}")
        raw = m.last_scores(items, lengths, ivs, exclude_seen=False, compiled=False)     # the eager pass, once
        worst = 0.0
        for exclude in (True, False):
            got = self(items, lengths, ivs, exclude)
            want = mask_seen(raw, items) if exclude else raw
            if not torch.equal(got.isinf(), want.isinf()):
                return float("inf")
            worst = max(worst, (got - want)[want.isfinite()].abs().max().item())
        return worst


@torch.inference_mode()
def compile_scores(model: GPTRec, layer: str, edits: Sequence[EditFactory] = ()) -> bool:
    """Install the compiled pass as ``model.compiled`` if it matches the eager one.

    Compiles now, on :data:`WARM_SHAPES`, without edits and with each of ``edits`` (functions of
    the batch size returning a last-position intervention of ``layer``, such as the steering that
    will be served: a graph with an edit is compiled for its edit function, and once for one
    edited feature and once for several, as sizes 1 and more are compiled apart). Returns whether
    the compiled pass is in use; the model must stay in eval mode, and be called under
    ``torch.inference_mode`` (as the recommenders do), since the graphs are compiled for it.
    """
    model.eval()
    model.compiled = None
    compiled = CompiledScores(model, layer)
    gen = torch.Generator().manual_seed(0)
    try:
        worst = max(compiled.max_difference(B, T, gen, e) for e in (None, *edits) for B, T in WARM_SHAPES)
    except Exception as e:                      # no C++ compiler, an unsupported platform, ...
        log.warning("torch.compile failed (%s: %s): the model stays uncompiled", type(e).__name__, e)
        return False
    if worst > TOLERANCE:
        log.warning("the compiled pass differs from the eager one by %.2g: the model stays uncompiled", worst)
        return False
    model.compiled = compiled
    return True
