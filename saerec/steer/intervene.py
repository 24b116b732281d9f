"""Batched steering: GPTRec with an SAE (and probes) spliced in at one layer, per-row edits.

Every edit becomes an affine change of one coordinate, c' = a·c + b (see ``edits.py``). For a batch,
the distinct targets J become columns of two (B, J) tables ``a`` and ``b`` (identity where a row has
no edit), so users with different edits share one forward pass. At each selected vector:

- ``delta`` splice (default): h' = h + std · [Σ_sae (c'-c) W_dec[j] + Σ_probe (c'-c) u]. The SAE error
  term is kept; a row without edits is returned bit for bit unchanged.
- ``reconstruction`` splice (the paper): h' = norm⁻¹(dec(f')) at the last position (and at every
  edited position), probe pushes added on top. Without edits this is the SAE-reconstructed model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..eval.ranking import length_batches, recommend
from ..heap import release_memory
from ..model.interface import Intervention, SequentialRecommender, Where, mask_seen
from ..model.laststep import replay_where
from ..rundir import A, RunDir
from ..sae.base import SparseAutoencoder
from ..sae.splice import delta_splice
from ..train.batching import pad_inputs
from .catalog import FeatureCatalog, ItemTable
from .edits import Edit, EditError, ResolvedEdit
from .probes import ProbeSet

SPLICES = ("delta", "reconstruction")


@dataclass
class EditTable:
    """Per-row affine edits over the batch's distinct targets."""

    sae_cols: torch.Tensor       # (Js,) feature ids
    probe_cols: torch.Tensor     # (Jp,) probe rows
    a: torch.Tensor              # (B, Js + Jp) multiplier
    b: torch.Tensor              # (B, Js + Jp) offset
    has: torch.Tensor            # (B, Js + Jp) the row edits this target
    last_only: torch.Tensor      # (B, Js + Jp) ... at its last position only
    any_all: bool                # some edit needs every position

    @classmethod
    def build(cls, rows: Sequence[Sequence[ResolvedEdit]]) -> "EditTable":
        keys = sorted({e.key for r in rows for e in r})
        sae = [k for k in keys if k[0] == "sae"]
        probe = [k for k in keys if k[0] == "probe"]
        col = {k: i for i, k in enumerate(sae + probe)}
        B, J = len(rows), len(col)
        a, b = torch.ones(B, J), torch.zeros(B, J)
        has, last_only = torch.zeros(B, J, dtype=torch.bool), torch.zeros(B, J, dtype=torch.bool)
        any_all = False
        for r, edits in enumerate(rows):
            for e in edits:
                c = col[e.key]
                if has[r, c]:
                    raise EditError(f"{e.label} ({e.kind} {e.index}) is edited twice for the same history")
                has[r, c] = True
                a[r, c], b[r, c] = {"set": (0.0, e.value), "add": (1.0, e.value), "scale": (e.value, 0.0)}[e.mode]
                last_only[r, c] = e.positions == "last"
                any_all |= e.positions == "all"
        return cls(torch.tensor([k[1] for k in sae], dtype=torch.long),
                   torch.tensor([k[1] for k in probe], dtype=torch.long), a, b, has, last_only, any_all)

    def at(self, where: Where) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a, b, applied) for each selected vector: an edit applies at its positions only."""
        applied = self.has[where.rows] & (~self.last_only[where.rows] | where.last[:, None])
        a = torch.where(applied, self.a[where.rows], 1.0)
        b = torch.where(applied, self.b[where.rows], 0.0)
        return a, b, applied


def check_splice(splice: str) -> None:
    if splice not in SPLICES:
        raise EditError(f"splice must be one of {', '.join(SPLICES)}, got {splice!r}")


def apply_affine(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c' = a·c + b, written so that a = 1, b = 0 returns c exactly."""
    return torch.where((a == 1.0) & (b == 0.0), c, a * c + b)


class DeltaEdit(torch.nn.Module):
    """The ``delta`` splice of SAE edits at the last position, as a module of tensors only: what a
    compiled scoring pass runs inside its graph (:mod:`saerec.model.compiled`). The same arithmetic
    as :meth:`Steerer.edit_fn` for such edits: h' = h + std · Σ_j (c'_j - c_j) W_dec[j].

    ``forward(h, cols, a, b, has)``: (B, d) states, the (J,) edited features, and the
    :class:`EditTable`'s (B, J) multipliers, offsets and which row edits which feature.
    """

    arg_dims = (("features",), ("batch", "features"), ("batch", "features"), ("batch", "features"))

    def __init__(self, sae: SparseAutoencoder, norm):
        super().__init__()
        self.sae = sae
        self.register_buffer("mean", norm.mean.clone())
        self.register_buffer("std", norm.std.clone())

    def forward(self, h: torch.Tensor, cols: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                has: torch.Tensor) -> torch.Tensor:
        c = self.sae.encode((h - self.mean) / self.std)[:, cols]
        out = delta_splice(h, apply_affine(c, a, b) - c, self.sae.W_dec[cols], self.std)
        return torch.where(has.any(1, keepdim=True), out, h)


class Steerer:
    """A recommender that takes steering edits. Ray-free: the Serve deployment and the CLI wrap it."""

    def __init__(self, model: SequentialRecommender, sae: SparseAutoencoder, layer: str, catalog: FeatureCatalog | None = None,
                 probes: ProbeSet | None = None, items: ItemTable | None = None):
        self.model, self.sae, self.layer = model.eval(), sae.eval(), layer
        self.catalog, self.probes, self.items = catalog, probes, items
        self.norm = sae.normalizer
        self.delta_edit = DeltaEdit(sae, self.norm).eval()     # what a compiled pass inlines

    @classmethod
    def from_run(cls, run: RunDir, probes: bool = True) -> "Steerer":
        from ..model.checkpoint import load_model
        from ..sae.base import load_sae

        model, _ = load_model(run.recommender)
        sae, meta = load_sae(run.root / "sae")
        catalog = FeatureCatalog.load(run) if run.has(A.ATTRIBUTES) else None
        probe_set = ProbeSet.load(run.path(A.STEER)) if probes and run.has(A.PROBES) else None
        return cls(model, sae, meta["layer"], catalog, probe_set, ItemTable.load(run, model.n_items))

    # resolution ---------------------------------------------------------------------
    def resolve(self, edit: Edit) -> ResolvedEdit:
        if edit.method == "probe":
            if self.probes is None:
                raise EditError("no linear probes in this run; run `saerec steer-eval --run RUN` (it trains them) first")
            i = self.probes.index(edit.target)
            return ResolvedEdit("probe", i, edit.value, edit.mode, edit.positions, self.probes.attributes[i])
        if isinstance(edit.target, str):
            if self.catalog is None:
                raise EditError("attribute edits need the feature catalog; run `saerec interpret --run RUN` first")
            j = self.catalog.feature_for(edit.target)
            return ResolvedEdit("sae", j, edit.value, edit.mode, edit.positions, self.catalog.canonical(edit.target))
        j = int(edit.target)
        if not 0 <= j < self.sae.cfg.n_latents:
            raise EditError(f"unknown feature id {j}; the SAE has features 0..{self.sae.cfg.n_latents - 1}")
        return ResolvedEdit("sae", j, edit.value, edit.mode, edit.positions,
                            self.catalog.label(j) if self.catalog else f"#{j}")

    def resolve_all(self, edits: Sequence[Edit | ResolvedEdit]) -> list[ResolvedEdit]:
        return [e if isinstance(e, ResolvedEdit) else self.resolve(e) for e in edits]

    # the intervention -------------------------------------------------------------------
    def edit_fn(self, table: EditTable, splice: str = "delta"):
        """``fn(h, where, codes=None)`` applying ``table``'s edits to the layer's vectors (see the module
        docstring). ``codes``: the SAE codes of ``h`` when the caller has them already (a sweep's
        variants share one state per history, so it encodes each state once, not once per variant).

        Building it does no tensor work: a request the compiled pass serves never calls it."""
        check_splice(splice)
        sae, norm, probes, Js = self.sae, self.norm, self.probes, len(table.sae_cols)

        def fn(h: torch.Tensor, where: Where, codes: torch.Tensor | None = None) -> torch.Tensor:
            W = sae.W_dec[table.sae_cols]                 # (Js, d)
            U = probes.directions[table.probe_cols] if len(table.probe_cols) else torch.zeros(0, sae.d_in)
            center = probes.center if probes is not None else torch.zeros(sae.d_in)
            x = norm(h)
            a, b, applied = table.at(where)
            f = sae.encode(x) if codes is None else codes
            cs = f[:, table.sae_cols]
            cp = (x - center) @ U.T
            ds = apply_affine(cs, a[:, :Js], b[:, :Js]) - cs
            dp = apply_affine(cp, a[:, Js:], b[:, Js:]) - cp
            push = dp @ U
            if splice == "delta":
                out = delta_splice(h, ds, W, norm.std, push)
                return torch.where(applied.any(1, keepdim=True), out, h)
            f = f.index_add(1, table.sae_cols, ds)
            out = norm.inverse(sae.decode(f) + push)
            return torch.where((where.last | applied.any(1))[:, None], out, h)

        return fn

    def intervention(self, rows: Sequence[Sequence[ResolvedEdit]], splice: str = "delta") -> Intervention | None:
        """The layer's intervention for a batch whose row r carries the edits ``rows[r]``."""
        table = EditTable.build(rows)
        fn = self.edit_fn(table, splice)
        if splice == "delta" and not table.has.any():
            return None                                   # nothing to do: exactly the original model
        if splice == "delta" and not table.any_all and not len(table.probe_cols):
            # SAE edits at the last position: a compiled pass can run them as DeltaEdit
            return Intervention(fn, "last", self.delta_edit, (table.sae_cols, table.a, table.b, table.has))
        return Intervention(fn, "all" if table.any_all else "last")

    def compile(self) -> bool:
        """Compile the model's scoring pass for serving (:mod:`saerec.model.compiled`), with
        last-position SAE edits (:class:`DeltaEdit`) inside, checked with edits of one and of two
        features. Returns whether the compiled pass is in use."""
        from ..model.compiled import compile_scores

        def edits(features: list[int]):
            row = [ResolvedEdit("sae", j, 1.0 + j, "add" if j else "set", "last", f"#{j}") for j in features]
            return lambda B: self.intervention([row if r % 3 else [] for r in range(B)] if B > 2 else [row] * B)

        return compile_scores(self.model, self.layer, self.delta_edit, [edits([0, 1]), edits([0])])

    # recommendations -----------------------------------------------------------------
    def truncate(self, history: np.ndarray) -> np.ndarray:
        """The model sees at most ``max_len`` items: the most recent ones (documented truncation)."""
        return np.asarray(history, dtype=np.int64)[-self.model.max_len:]

    def recommend(self, histories: Sequence[np.ndarray], edits: Sequence[Sequence[Edit | ResolvedEdit]] | None = None,
                  k: int = 10, splice: str = "delta", exclude_seen: bool = True, batch_size: int = 256,
                  with_scores: bool = False, max_tokens: int | None = None, candidates=None):
        """Top-k dense indices for each history (dense indices, oldest first) under its own edits
        (and their scores with ``with_scores``). ``candidates``: a per-batch score mask, see
        :func:`saerec.eval.ranking.recommend`.

        ``edits``: one list per history (``None``: no edits anywhere). Edits are resolved once up front,
        so a bad edit fails before any work is done.
        """
        check_splice(splice)
        histories = [self.truncate(h) for h in histories]
        if any(len(h) == 0 for h in histories):
            raise EditError("a history is empty (after dropping unknown items)")
        if edits is None:
            edits = [[] for _ in histories]
        if len(edits) != len(histories):
            raise EditError(f"{len(edits)} edit lists for {len(histories)} histories")
        cache: dict[Edit, ResolvedEdit] = {}

        def res(e: Edit | ResolvedEdit) -> ResolvedEdit:
            if isinstance(e, ResolvedEdit):
                return e
            if e not in cache:
                cache[e] = self.resolve(e)
            return cache[e]

        resolved = [[res(e) for e in row] for row in edits]

        def ivs(batch_rows: np.ndarray):
            rows = [resolved[i] for i in batch_rows]
            if splice == "delta" and not any(rows):
                return {}                                 # no edit: the original model, nothing to build
            iv = self.intervention(rows, splice)
            return {self.layer: iv} if iv is not None else {}

        return recommend(self.model, histories, k=k, batch_size=batch_size, exclude_seen=exclude_seen,
                         interventions=ivs, with_scores=with_scores, max_tokens=max_tokens, candidates=candidates)

    @torch.inference_mode()
    def steered_and_plain_scores(self, histories: Sequence[np.ndarray], edits: Sequence[Sequence[ResolvedEdit]],
                                 exclude_seen: bool = True) -> torch.Tensor:
        """(b, 2, V) item scores of each history without (variant 0) and with (variant 1) its own
        last-position edits, from one prefill: the history runs once and both versions of its last
        step are replayed through the later blocks (what a response with ``include_unsteered`` needs).
        Equal to two plain passes up to float rounding."""
        resolved = [self.resolve_all(r) for r in edits]
        if any(e.positions != "last" for r in resolved for e in r):
            raise EditError("steered_and_plain_scores needs last-position edits")
        fn = self.edit_fn(EditTable.build([v for r in resolved for v in ([], r)]))
        return self._variant_scores([self.truncate(h) for h in histories], 2, fn, exclude_seen, per_row=True)

    @torch.inference_mode()
    def recommend_variants(self, histories: Sequence[np.ndarray], variants: Sequence[Sequence[Edit | ResolvedEdit]],
                           k: int = 10, splice: str = "delta", exclude_seen: bool = True,
                           max_rows: int = 8192, progress=None) -> np.ndarray:
        """Top-k for every history under each of n edit lists: (U, n, k) dense indices.

        All edits must act at the last position. Each history is run once (``prefill_last``) and its n
        edited last steps are replayed through the later blocks together, which makes a sweep of n
        values cost about one forward pass instead of n. ``progress(histories_done)`` is called after
        each chunk of at most ``max_rows`` (history, variant) rows.
        """
        check_splice(splice)
        resolved = [self.resolve_all(v) for v in variants]
        if any(e.positions != "last" for v in resolved for e in v):
            raise EditError("recommend_variants needs last-position edits; use recommend() for positions 'all'")
        n = len(resolved)
        fn = self.edit_fn(EditTable.build(resolved), splice)
        histories = [self.truncate(h) for h in histories]
        out = np.zeros((len(histories), n, k), dtype=np.int64)
        per = max(1, max_rows // max(n, 1))
        for rows in length_batches([len(h) for h in histories], per):
            release_memory()                 # each chunk's scores are hundreds of MB: keep the heap flat
            scores = self._variant_scores([histories[i] for i in rows], n, fn, exclude_seen)
            out[rows] = (scores.topk(k, dim=2).indices + 1).numpy()
            if progress is not None:
                progress(len(rows))
        return out

    def _variant_scores(self, histories: list[np.ndarray], n: int, fn, exclude_seen: bool = True,
                        per_row: bool = False) -> torch.Tensor:
        """(b, n, V) item scores of b histories under n last-step variants produced by ``fn``
        (variant v of every row carries the edits of row v of ``fn``'s edit table; with ``per_row``,
        variant v of history u those of row u * n + v)."""
        model = self.model
        items, lengths = pad_inputs(histories)
        cache = model.prefill_last(items, lengths, self.layer)
        b = len(histories)
        h = cache.state.repeat_interleave(n, dim=0)                       # row u * n + v
        codes = self.sae.encode(self.norm(cache.state)).repeat_interleave(n, dim=0)
        h = fn(h, replay_where(lengths, n, per_row), codes)
        final = model.replay_last(cache, h.view(b, n, -1)).reshape(b * n, -1)
        scores = model.scores(final).view(b, n, -1)
        if exclude_seen:                                   # one (b, V) mask for all n variants of a history
            scores.add_(mask_seen(torch.zeros(b, scores.shape[-1], dtype=scores.dtype), items)[:, None, :])
        return scores
