"""What every stage after training needs of a sequential recommender: the model interface.

A recommender here maps right-padded histories of dense item indices (1..V, 0 = padding, oldest
first) to scores over the V items for the next one. Every later stage (extract, sae, interpret,
steer, explain, serve) talks to it only through :class:`SequentialRecommender`:

- **named hidden states** (``state_names``), captured and edited at chosen positions through one
  mechanism, :class:`Intervention` (SAE splicing, steering, probes and explanations all use it);
- ``forward(items, lengths, capture, interventions)``: the states at every position of the given
  sequence (what the SAE is trained on);
- ``query(items, lengths, capture, interventions)``: the ``final`` state that scores the item
  *after* each history, plus captured states *at that query position*. For a causal model (GPTRec,
  SASRec) the query position is the last item; a masked model (BERT4Rec) appends a mask token and
  reads it. An intervention's ``"last"`` position is always the query position;
- ``scores(hidden)`` over items 1..V (column j = dense index j + 1), and :meth:`last_scores`, the
  query's scores with seen items masked: what a recommendation ranks;
- ``n_items`` and ``max_len`` (the longest history one pass takes); the catalogue (dense index <->
  dataset id) is stored beside the weights (``RECOMMENDER/items.parquet``).

Optional fast paths are capabilities a model may offer by overriding a method; each has a generic,
correct fallback here (tests check that both give the same lists):

- ``prefill_last`` / ``replay_last``: score many edited variants of the query state at once (a
  steering sweep). Fallback: one full query pass per variant, the edit spliced in by an
  intervention (:mod:`.laststep`).
- ``compiled``: a compiled scoring pass for serving (GPTRec only, :mod:`.compiled`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn


@dataclass
class Intervention:
    """Edit a named hidden state at chosen positions.

    ``fn`` receives the selected vectors as an ``(N, d)`` tensor together with a :class:`Where`
    (batch row, position and is-last flag of each vector, so different users in one batch can carry
    different edits, and an edit can target the last position only) and returns the replacement
    ``(N, d)``. ``positions``: ``"last"`` (each sequence's query position: the one that makes the
    recommendation), ``"all"`` (every real position), or a boolean ``(B, T)`` mask.

    ``edit`` and ``args``: optionally, the same edit at the last positions as a module of tensors,
    ``edit(h, *args)``, which a compiled pass built with that module runs inside its graph
    (:mod:`saerec.model.compiled`); without them the edit runs eagerly.
    """

    fn: Callable[[torch.Tensor, "Where"], torch.Tensor]
    positions: str | torch.Tensor = "last"
    edit: nn.Module | None = None
    args: tuple[torch.Tensor, ...] = ()


class Where(NamedTuple):
    """Where each selected vector of an intervention sits: batch row, position, last real position?"""

    rows: torch.Tensor      # (N,) long
    cols: torch.Tensor      # (N,) long
    last: torch.Tensor      # (N,) bool


@dataclass
class ModelOutput:
    hidden: torch.Tensor                                  # (B, T, d) the ``final`` state, or (B, d) for a query
    captured: dict[str, torch.Tensor] = field(default_factory=dict)


def replaced(h: torch.Tensor, index: torch.Tensor, iv: Intervention, where: Where) -> torch.Tensor:
    """A copy of ``h`` whose vectors at ``index`` (a mask or row indices) are ``iv.fn``'s replacements."""
    h = h.clone()
    h[index] = iv.fn(h[index], where).to(h.dtype)
    return h


def position_mask(positions: str | torch.Tensor, lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Boolean (B, T) mask of the positions an intervention touches."""
    ar = torch.arange(T, device=lengths.device)[None, :]
    if isinstance(positions, torch.Tensor):
        return positions.to(torch.bool) & (ar < lengths[:, None])
    if positions == "last":
        return ar == (lengths[:, None] - 1)
    if positions == "all":
        return ar < lengths[:, None]
    raise ValueError(f"positions must be 'last', 'all' or a mask, got {positions!r}")


def apply_intervention(h: torch.Tensor, iv: Intervention, lengths: torch.Tensor) -> torch.Tensor:
    """``h`` (B, T, d) with ``iv`` applied at the positions it selects (a copy; ``h`` is untouched)."""
    mask = position_mask(iv.positions, lengths, h.shape[1])
    rows, cols = mask.nonzero().unbind(1)
    return replaced(h, mask, iv, Where(rows, cols, cols == lengths[rows] - 1))


def mask_seen(scores: torch.Tensor, inputs: torch.Tensor, exclude: bool | torch.Tensor = True) -> torch.Tensor:
    """Set the score of every item in a user's input to -inf (scores column j = dense index j + 1).

    ``exclude`` may be a boolean tensor, so a compiled graph serves both settings (False: unchanged).
    Indices above the catalogue (a masked model's mask token) are left alone.
    """
    V = scores.shape[-1]
    real = (inputs > 0) & (inputs <= V)
    idx = torch.where(real, inputs - 1, 0)
    fill = torch.where(real & exclude, float("-inf"), 0.0).to(scores.dtype)
    # padding maps to column 0 with fill 0: scatter_add of 0 leaves it untouched
    return scores.scatter_add(1, idx, fill)


def check_states(names: Sequence[str], known: Sequence[str]) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown hidden state(s) {unknown}; known: {list(known)}")


class Visitor:
    """Applies the interventions and records the captures of one pass, state by state.

    A model's forward calls ``visit(name, h)`` on each named state as it computes it (``h``: (B, T, d)
    at every position) and continues with what it returns."""

    def __init__(self, lengths: torch.Tensor, capture: Sequence[str] = (),
                 interventions: Mapping[str, Intervention] | None = None):
        self.lengths, self.capture, self.interventions = lengths, capture, interventions or {}
        self.captured: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, h: torch.Tensor) -> torch.Tensor:
        iv = self.interventions.get(name)
        if iv is not None:
            h = apply_intervention(h, iv, self.lengths)
        if name in self.capture:
            self.captured[name] = h
        return h


def last_of(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, d) -> (B, d): each row's vector at its last real position."""
    return h[torch.arange(len(lengths), device=lengths.device), lengths - 1]


def append_token(items: torch.Tensor, lengths: torch.Tensor, token: int, max_len: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each history with ``token`` appended after its last item (a masked model's query), the oldest
    item dropped when the history already fills ``max_len``."""
    full = lengths >= max_len
    if bool(full.any()):
        items = torch.where(full[:, None], items.roll(-1, dims=1), items)
        lengths = torch.where(full, lengths - 1, lengths)
    B = items.shape[0]
    T = min(int(lengths.max()) + 1, max_len)
    q = torch.zeros(B, T, dtype=items.dtype, device=items.device)
    q[:, :min(items.shape[1], T)] = items[:, :T]
    q[torch.arange(B, device=items.device), lengths] = token
    return q, lengths + 1


class SequentialRecommender(nn.Module):
    """The interface (see the module docstring). Subclasses implement ``state_names``, ``max_len``,
    ``forward`` and ``item_weights`` (or ``scores``); the rest has generic implementations."""

    n_items: int
    compiled = None          # a compiled scoring pass for serving, or None

    @property
    def state_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def max_len(self) -> int:
        """The longest history one pass takes (longer ones keep their most recent items)."""
        raise NotImplementedError

    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None, capture: Sequence[str] = (),
                interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        raise NotImplementedError

    def query_inputs(self, items: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence a query pass runs on: the history itself for a causal model (the last item's
        state predicts the next); a masked model appends its mask token."""
        return items, lengths

    def query(self, items: torch.Tensor, lengths: torch.Tensor, capture: Sequence[str] = (),
              interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        """The ``final`` state at each history's query position (B, d) and the captured states there
        (each (B, d)); interventions with positions ``"last"`` act at the query position."""
        q, qlen = self.query_inputs(items, lengths)
        out = self(q, qlen, capture=capture, interventions=interventions)
        return ModelOutput(last_of(out.hidden, qlen), {n: last_of(h, qlen) for n, h in out.captured.items()})

    def item_weights(self) -> torch.Tensor:
        """The output head as item vectors (V, d), when scores are dot products with them."""
        raise NotImplementedError

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over items 1..V for hidden vectors (..., d); column j is dense index j + 1."""
        return hidden @ self.item_weights().T

    def last_scores(self, items: torch.Tensor, lengths: torch.Tensor,
                    interventions: Mapping[str, Intervention] | None = None, exclude_seen: bool = True,
                    compiled: bool = True) -> torch.Tensor:
        """Item scores (B, V) after each history, the history's items at -inf with ``exclude_seen``:
        what a recommendation ranks. Runs the compiled pass where one is installed and takes these
        interventions (unless ``compiled`` is False: the eager pass it is checked on)."""
        if compiled and self.compiled is not None:
            scores = self.compiled(items, lengths, interventions, exclude_seen)
            if scores is not None:
                return scores
        scores = self.scores(self.query(items, lengths, interventions=interventions).hidden)
        return mask_seen(scores, items) if exclude_seen else scores

    # capability: many edited variants of the query state (generic fallback in .laststep) ----------
    def prefill_last(self, items: torch.Tensor, lengths: torch.Tensor, name: str):
        from .laststep import generic_prefill

        return generic_prefill(self, items, lengths, name)

    def replay_last(self, cache, state: torch.Tensor) -> torch.Tensor:
        """``final`` vectors (B, n, d) at the query position for n edited variants (B, n, d) of the
        cached state: equal to a query pass with each variant spliced in."""
        from .laststep import generic_replay

        return generic_replay(self, cache, state)


class BlockRecommender(SequentialRecommender):
    """The built-in architectures' shared frame: sizes in ``self.cfg`` (a ModelConfig), states named
    ``embed``, ``block.0`` ... ``block.{L-1}`` (``self.blocks``), ``final``."""

    @property
    def state_names(self) -> list[str]:
        return ["embed", *(f"block.{i}" for i in range(len(self.blocks))), "final"]

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    def start_pass(self, items: torch.Tensor, lengths: torch.Tensor | None, capture: Sequence[str],
                   interventions: Mapping[str, Intervention] | None) -> tuple[torch.Tensor, Visitor]:
        """Checks a forward pass's inputs; returns the lengths and the pass's :class:`Visitor`."""
        T = items.shape[1]
        if T > self.cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.cfg.max_len}")
        check_states([*capture, *(interventions or {})], self.state_names)
        if lengths is None:
            lengths = (items != 0).sum(1)
        return lengths, Visitor(lengths, capture, interventions)
