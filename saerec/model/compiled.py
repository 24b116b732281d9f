"""GPTRec's scoring pass compiled ahead of time with AOTInductor: an opt-in for serving.

Why: a lone request is about a hundred and fifty small tensor operations, and on a CPU the dispatch
between them costs about as much as their arithmetic. Tracing the blocks (:mod:`.traced`) removes
the Python between them. AOTInductor goes further: ``torch.export`` captures the whole pass, from
item ids to the masked item scores, and inductor compiles it into one shared library whose wrapper
is C++. A call is then one C++ entry point: no per-call guard checks, no Python wrapper around the
kernels (both of which ``torch.compile`` keeps, and which a replica pays for with cold caches
between requests). ``benchmarks/serve_latency.py --compile`` measures what it buys behind Serve.

A request without edits runs one compiled pass. A steered request whose edits act on the steering
layer at the last position runs a second one, which inlines an edit module (for the Steerer, the
delta splice of SAE edits, :class:`saerec.steer.intervene.DeltaEdit`) between the layer and the
rest of the pass. The edit's tensors (which features, which values, per row) are inputs, so
requests with different edits share it. Other edits (every position, another layer, probes, the
reconstruction splice) run eagerly. Whether seen items are excluded is a tensor input too.
Batch size, history length and the number of edited features are dynamic: one library each
serves every shape.

Costs: compiling takes tens of seconds (done when a replica loads, so no request waits for it),
and fused kernels round floats differently from eager ones: scores agree to about 1e-5, not bit
for bit. The weights are compiled in as constants: the model (and the SAE) must not change after
compiling. Every pass is checked against the eager one on several shapes at load; if any differs
by more than :data:`TOLERANCE`, or compiling fails (no C++ compiler, an unsupported platform),
nothing is installed (the Serve deployment then traces the blocks instead).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .gptrec import GPTRec
from .interface import Intervention, mask_seen
from .laststep import start_block

EditFactory = Callable[[int], Intervention]      # batch size -> an intervention for that many rows

log = logging.getLogger("saerec.model")

# (batch, length) shapes every compiled pass is checked on at load against the eager pass: a lone
# request, a one-item history, small and full-length batches
CHECK_SHAPES = ((1, 7), (1, 1), (3, 23), (4, 1), (2, 200), (1, 130))
TOLERANCE = 1e-4


def prefix(model: GPTRec, items: torch.Tensor, n: int) -> torch.Tensor:
    """The state after the first ``n`` blocks at every position (``embed`` for 0), no interventions."""
    x = model.embed(items)
    for i in range(n):
        x = model.blocks[i](x)
    return x


def suffix_last(model: GPTRec, x: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """From the state after ``n`` blocks (every position, ``n`` < number of blocks) to the ``final``
    state at each row's last real position, (B, d), the last block shortened as in ``forward_last``.
    With :func:`prefix` this splits ``GPTRec.forward_last`` at one state, so a steering edit can sit
    between the two inside one graph."""
    for i in range(n, len(model.blocks) - 1):
        x = model.blocks[i](x)
    return model.ln_f(model.blocks[-1].forward_last(x, lengths))


class WholePass(nn.Module):
    """(items, lengths, exclude) -> masked scores (B, V): ``GPTRec.last_scores`` without edits."""

    def __init__(self, model: GPTRec, split: int):
        super().__init__()
        self.model, self.split = model, split

    def rest(self, x, items, lengths, exclude):
        """The state after ``split`` blocks (every position) -> masked scores."""
        m = self.model
        return mask_seen(m.scores(suffix_last(m, x, lengths, self.split)), items, exclude)

    def forward(self, items, lengths, exclude):
        return self.rest(prefix(self.model, items, self.split), items, lengths, exclude)


class EditedPass(WholePass):
    """(items, lengths, exclude, *edit args) -> masked scores, ``edit`` applied to the state after
    ``split`` blocks at each row's last position."""

    def __init__(self, model: GPTRec, split: int, edit: nn.Module):
        super().__init__(model, split)
        self.edit = edit

    def forward(self, items, lengths, exclude, *args):
        x = prefix(self.model, items, self.split)
        rows, last = torch.arange(x.shape[0]), lengths - 1
        h = self.edit(x[rows, last], *args)
        return self.rest(x.index_put((rows, last), h.to(x.dtype)), items, lengths, exclude)


class _Library:
    """A loaded AOTInductor library called with flat tensor inputs and one tensor output.

    Calls the package loader's ``boxed_run`` directly: the package's own ``__call__`` parses its
    input and output tree specs from JSON and walks them on every call, a tenth of a millisecond
    that a flat signature does not need."""

    def __init__(self, package):
        self.loader = package.loader

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.loader.boxed_run(list(inputs))[0]


def _aot_compile(module: nn.Module, args: tuple, dims: tuple, workdir: Path, name: str) -> _Library:
    """``module`` exported with dynamic ``dims`` and compiled by AOTInductor: a callable on tensors."""
    ep = torch.export.export(module, args, dynamic_shapes=dims)
    path = torch._inductor.aoti_compile_and_package(ep, package_path=str(workdir / f"{name}.pt2"))
    return _Library(torch._inductor.aoti_load_package(path))


class CompiledScores:
    """``GPTRec.last_scores`` from AOTInductor-compiled passes: the whole pass, and (given an edit
    module) the pass with a last-position edit of ``layer``. Installed as ``model.compiled`` by
    :func:`compile_scores`.

    An edit module's ``forward(h, *args)`` maps the (B, d) last-position states to edited ones; its
    ``arg_dims`` names each arg's dynamic dimensions (``"batch"`` is the batch; other names become
    their own dynamic sizes), and an :class:`Intervention` carries the module and its args.
    """

    def __init__(self, model: GPTRec, layer: str, edit: nn.Module | None = None, example: Intervention | None = None):
        self.model, self.layer, self.edit = model, layer, edit
        n = start_block(model, layer)              # blocks before the layer's state
        self.split = split = min(n, len(model.blocks) - 1)
        self.steers_between = n == split            # the layer's state lies before the last block
        self.flags = {True: torch.tensor(True), False: torch.tensor(False)}   # exclude_seen as an input

        T = min(16, model.cfg.max_len)             # example sizes above 1: export specialises 0 and 1
        items, lengths = torch.randint(1, model.n_items + 1, (2, T)), torch.full((2,), T)
        dim = {"batch": torch.export.Dim("batch", min=1), "length": torch.export.Dim("length", min=1, max=model.cfg.max_len)}
        io = ({0: dim["batch"], 1: dim["length"]}, {0: dim["batch"]}, None)
        work = Path(tempfile.mkdtemp(prefix="saerec-aoti-"))
        try:
            self.whole = _aot_compile(WholePass(model, split).eval(), (items, lengths, self.flags[True]), io, work, "whole")
            self.edited = None
            if edit is not None and self.steers_between:
                if example is None or example.edit is not edit:
                    raise ValueError("compiling an edit needs an example intervention that carries it")
                arg_dims = tuple({i: dim.setdefault(d, torch.export.Dim(d, min=1)) for i, d in enumerate(names)}
                                 for names in edit.arg_dims)
                self.edited = _aot_compile(EditedPass(model, split, edit).eval(),
                                           (items, lengths, self.flags[True], *example.args), (*io, arg_dims), work,
                                           "edited")
        finally:
            shutil.rmtree(work, ignore_errors=True)  # the loaded libraries live in the loader's own copies

    def takes(self, interventions: Mapping[str, Intervention] | None) -> bool:
        """Whether these interventions run compiled: none, or one at ``layer``'s last positions that
        carries this pass's edit module."""
        if self.model.training:
            return False
        if not interventions:
            return True
        iv = interventions.get(self.layer)
        return (len(interventions) == 1 and iv is not None and self.edited is not None
                and iv.edit is self.edit and isinstance(iv.positions, str) and iv.positions == "last")

    def __call__(self, items: torch.Tensor, lengths: torch.Tensor,
                 interventions: Mapping[str, Intervention] | None = None,
                 exclude_seen: bool = True) -> torch.Tensor | None:
        """Masked scores (B, V), or None for edits it does not take (the caller runs the eager pass)."""
        if not self.takes(interventions):
            return None
        exclude = self.flags[bool(exclude_seen)]
        if not interventions:
            return self.whole(items, lengths, exclude)
        return self.edited(items, lengths, exclude, *interventions[self.layer].args)

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
def compile_scores(model: GPTRec, layer: str, edit: nn.Module | None = None, edits: Sequence[EditFactory] = ()) -> bool:
    """Install the compiled pass as ``model.compiled`` if it matches the eager one.

    Compiles the whole pass, and with ``edit`` (an edit module, see :class:`CompiledScores`) the
    edited one, exported on ``edits[0]``'s intervention. Checks every pass on :data:`CHECK_SHAPES`
    without edits and with each of ``edits`` (functions of the batch size returning a last-position
    intervention of ``layer`` that carries ``edit``, such as the steering that will be served).
    Returns whether the compiled pass is in use. The model must stay in eval mode and unchanged.
    """
    model.eval()
    model.compiled = None
    if not isinstance(model, GPTRec):          # the passes are written for GPTRec's blocks
        log.info("no compiled pass for %s: it serves eagerly", type(model).__name__)
        return False
    try:
        compiled = CompiledScores(model, layer, edit, edits[0](2) if edit is not None and edits else None)
        gen = torch.Generator().manual_seed(0)
        checks = (None, *edits) if compiled.edited is not None else (None,)
        worst = max(compiled.max_difference(B, T, gen, e) for e in checks for B, T in CHECK_SHAPES)
    except Exception as e:                      # no C++ compiler, an unsupported platform, ...
        log.warning("compiling the scoring pass failed (%s: %s): the model stays uncompiled", type(e).__name__, e)
        return False
    if worst > TOLERANCE:
        log.warning("the compiled pass differs from the eager one by %.2g: the model stays uncompiled", worst)
        return False
    model.compiled = compiled
    return True
