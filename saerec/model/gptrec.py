"""GPTRec (the paper's recommender): GPT-2 blocks over item embeddings, output tied to the input table.

Layout follows nanoGPT: learned positions, pre-LN blocks (attention + GELU MLP), dropout, a final
LayerNorm, N(0, 0.02) init with the residual projections scaled by 1/sqrt(2 * n_layers).

Sequences are **right-padded** with index 0: with causal attention a real position never sees
the padding after it, so no attention mask is needed and the outputs at real positions do not
depend on how much padding a batch carries.

Named hidden states: ``embed`` (after embeddings + dropout), ``block.0`` ... ``block.{L-1}`` (each
block's output: the residual stream), ``final`` (after the last LayerNorm, what the head scores).
An :class:`Intervention` replaces or edits one named state at chosen positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .dropout import Dropout


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0, "d_model must be divisible by n_heads"
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.n_heads = cfg.n_heads
        self.dropout = cfg.attn_dropout
        self.resid_drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def forward_last(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The block's output at each row's last real position only: (B, T, d) -> (B, d).

        Keys and values still come from every position, but the query, the output projection and the
        MLP run once per row instead of T times. Equal to ``forward(x)[range(B), lengths - 1]`` up to
        float rounding (eval mode).
        """
        B, T, C = x.shape
        H = self.attn.n_heads
        hd = C // H
        rows, last = torch.arange(B, device=x.device), lengths - 1
        q, k, v = self.attn.qkv(self.ln1(x)).split(C, dim=2)
        q = q[rows, last].view(B, H, 1, hd)
        k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)                              # (B, H, 1, T)
        future = torch.arange(T, device=x.device)[None, :] > last[:, None]
        att = torch.softmax(att.masked_fill(future[:, None, None, :], float("-inf")), dim=-1)
        y = (att @ v).reshape(B, C)
        x = x[rows, last] + self.attn.resid_drop(self.attn.proj(y))
        return x + self.mlp(self.ln2(x))


@dataclass
class Intervention:
    """Edit a named hidden state at chosen positions.

    ``fn`` receives the selected vectors as an ``(N, d)`` tensor together with a :class:`Where`
    (batch row, position and is-last flag of each vector, so different users in one batch can carry
    different edits, and an edit can target the last position only) and returns the replacement
    ``(N, d)``. ``positions``: ``"last"`` (each sequence's last real position: the one that makes the
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
    hidden: torch.Tensor                                  # (B, T, d): the ``final`` state
    captured: dict[str, torch.Tensor] = field(default_factory=dict)


def _replaced(h: torch.Tensor, index: torch.Tensor, iv: "Intervention", where: "Where") -> torch.Tensor:
    """A copy of ``h`` whose vectors at ``index`` (a mask or row indices) are ``iv.fn``'s replacements."""
    h = h.clone()
    h[index] = iv.fn(h[index], where).to(h.dtype)
    return h


def mask_seen(scores: torch.Tensor, inputs: torch.Tensor, exclude: bool | torch.Tensor = True) -> torch.Tensor:
    """Set the score of every item in a user's input to -inf (scores column j = dense index j + 1).

    ``exclude`` may be a boolean tensor, so a compiled graph serves both settings (False: unchanged).
    """
    idx = (inputs - 1).clamp(min=0)
    fill = torch.where((inputs > 0) & exclude, float("-inf"), 0.0).to(scores.dtype)
    # padding maps to column 0 with fill 0: scatter_add of 0 leaves it untouched
    return scores.scatter_add(1, idx, fill)


def apply_intervention(h: torch.Tensor, iv: "Intervention", lengths: torch.Tensor) -> torch.Tensor:
    """``h`` (B, T, d) with ``iv`` applied at the positions it selects (a copy; ``h`` is untouched)."""
    mask = position_mask(iv.positions, lengths, h.shape[1])
    rows, cols = mask.nonzero().unbind(1)
    return _replaced(h, mask, iv, Where(rows, cols, cols == lengths[rows] - 1))


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


@dataclass
class LastStepCache:
    """What the last position needs from the rest of each history, for the blocks after a named state.

    Edits at the last position only (the paper's steering) leave every earlier position unchanged,
    so their keys and values in the later blocks can be computed once and shared by any number of
    edited variants of the last step: the same trick as a KV cache in autoregressive decoding.
    """

    start: int                     # first block to replay
    state: torch.Tensor            # (B, d) the named state at each history's last position
    keys: list[torch.Tensor]       # per replayed block: (B, H, T, hd)
    values: list[torch.Tensor]
    lengths: torch.Tensor          # (B,)
    final: bool                    # the named state is "final" (nothing to replay)


class GPTRec(nn.Module):
    def __init__(self, cfg: ModelConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        self.item_emb = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.compiled = None        # a compiled scoring pass for serving (saerec.model.compiled), or None

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @property
    def state_names(self) -> list[str]:
        return ["embed", *(f"block.{i}" for i in range(len(self.blocks))), "final"]

    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None,
                capture: Sequence[str] = (), interventions: Mapping[str, Intervention] | None = None,
                _blocks: int | None = None) -> ModelOutput:
        """items: (B, T) right-padded dense indices. Returns the final hidden states and any captured ones.

        ``_blocks`` (internal, for :meth:`forward_last`): stop after that many blocks, before ``final``
        (``hidden`` is then the state after block ``_blocks - 1``, or ``embed`` for 0).
        """
        B, T = items.shape
        if T > self.cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.cfg.max_len}")
        interventions = interventions or {}
        unknown = [n for n in (*capture, *interventions) if n not in self.state_names]
        if unknown:
            raise KeyError(f"unknown hidden state(s) {unknown}; known: {self.state_names}")
        if lengths is None:
            lengths = (items != 0).sum(1)
        captured: dict[str, torch.Tensor] = {}

        def visit(name: str, h: torch.Tensor) -> torch.Tensor:
            iv = interventions.get(name)
            if iv is not None:
                h = apply_intervention(h, iv, lengths)
            if name in capture:
                captured[name] = h
            return h

        x = visit("embed", self.embed(items))
        for i, block in enumerate(self.blocks):
            if i == _blocks:                     # (not self.blocks[:n]: slicing builds a new ModuleList)
                break
            x = visit(f"block.{i}", block(x))
        if _blocks is not None:
            return ModelOutput(x, captured)
        x = visit("final", self.ln_f(x))
        return ModelOutput(x, captured)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """The ``embed`` state: item plus position embeddings (then dropout), (B, T) -> (B, T, d)."""
        pos = torch.arange(items.shape[1], device=items.device)
        return self.drop(self.item_emb(items) + self.pos_emb(pos)[None])

    def prefix(self, items: torch.Tensor, n: int) -> torch.Tensor:
        """The state after the first ``n`` blocks at every position (``embed`` for 0), no interventions.

        With :meth:`suffix_last` this splits :meth:`forward_last` at one state: compiled serving
        (:mod:`saerec.model.compiled`) applies a steering edit between the two, inside one graph.
        """
        x = self.embed(items)
        for i in range(n):
            x = self.blocks[i](x)
        return x

    def suffix_last(self, x: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
        """From the state after ``n`` blocks (every position, ``n`` < number of blocks) to the ``final``
        state at each row's last real position, (B, d), the last block shortened as in :meth:`forward_last`."""
        for i in range(n, len(self.blocks) - 1):
            x = self.blocks[i](x)
        return self.ln_f(self.blocks[-1].forward_last(x, lengths))

    def forward_last(self, items: torch.Tensor, lengths: torch.Tensor,
                     interventions: Mapping[str, Intervention] | None = None) -> torch.Tensor:
        """The ``final`` state at each row's last real position, (B, d): what recommendations score.

        Only the last block is shortened (:meth:`Block.forward_last`): earlier blocks feed keys and
        values of every position to it. An intervention on the last block's output or on ``final``
        is applied at the last positions it selects: the other positions cannot reach the result.
        Equal to ``last_hidden(forward(...))`` up to float rounding; a third cheaper with 3 blocks.
        """
        B, T = items.shape
        interventions = interventions or {}
        *early, last_block = self.blocks
        tail = {f"block.{len(early)}", "final"}
        head_ivs = {n: iv for n, iv in interventions.items() if n not in tail}
        x = self(items, lengths, interventions=head_ivs, _blocks=len(early)).hidden   # the last block's input
        x = last_block.forward_last(x, lengths)
        rows, cols = torch.arange(B, device=items.device), lengths - 1

        def visit(name: str, h: torch.Tensor) -> torch.Tensor:
            iv = interventions.get(name)
            if iv is None:
                return h
            sel = position_mask(iv.positions, lengths, T)[rows, cols].nonzero().squeeze(1)
            return _replaced(h, sel, iv, Where(sel, cols[sel], torch.ones_like(sel, dtype=torch.bool)))

        x = visit(f"block.{len(early)}", x)
        return visit("final", self.ln_f(x))

    def _start_block(self, name: str) -> int:
        if name not in self.state_names:
            raise KeyError(f"unknown hidden state {name!r}; known: {self.state_names}")
        return 0 if name == "embed" else len(self.blocks) if name == "final" else int(name.split(".")[1]) + 1

    @torch.no_grad()
    def prefill_last(self, items: torch.Tensor, lengths: torch.Tensor, name: str) -> LastStepCache:
        """One forward pass that keeps what :meth:`replay_last` needs (eval mode only)."""
        start = self._start_block(name)
        inputs = [name] + [f"block.{i - 1}" for i in range(start + 1, len(self.blocks))]
        out = self(items, lengths, capture=inputs)
        B, T, C = items.shape[0], items.shape[1], self.cfg.d_model
        H = self.cfg.n_heads
        keys, values = [], []
        for i, x_in in zip(range(start, len(self.blocks)), inputs):
            blk = self.blocks[i]
            _, k, v = blk.attn.qkv(blk.ln1(out.captured[x_in])).split(C, dim=2)
            keys.append(k.view(B, T, H, C // H).transpose(1, 2))
            values.append(v.view(B, T, H, C // H).transpose(1, 2))
        state = out.captured[name][torch.arange(B), lengths - 1]
        return LastStepCache(start, state, keys, values, lengths, name == "final")

    @torch.no_grad()
    def replay_last(self, cache: LastStepCache, state: torch.Tensor) -> torch.Tensor:
        """Final hidden vectors (B, n, d) at the last position for n edited variants (B, n, d) of the
        cached state. Equal to a full forward with the edit at the last position (up to float rounding)."""
        if cache.final:
            return state
        B, n, C = state.shape
        H = self.cfg.n_heads
        hd = C // H
        T = cache.keys[0].shape[2] if cache.keys else 0
        before = torch.arange(T)[None, :] < (cache.lengths - 1)[:, None]          # keys strictly before last
        x = state
        for blk, K, V in zip(self.blocks[cache.start:], cache.keys, cache.values):
            q, k, v = (t.view(B, n, H, hd) for t in blk.attn.qkv(blk.ln1(x)).split(C, dim=2))
            s_old = torch.einsum("bnhd,bhtd->bnht", q, K) / math.sqrt(hd)
            s_old = s_old.masked_fill(~before[:, None, None, :], float("-inf"))
            s_new = (q * k).sum(-1, keepdim=True) / math.sqrt(hd)
            att = torch.softmax(torch.cat([s_old, s_new], dim=-1), dim=-1)
            y = torch.einsum("bnht,bhtd->bnhd", att[..., :T], V) + att[..., T:] * v
            x = x + blk.attn.proj(y.reshape(B, n, C))
            x = x + blk.mlp(blk.ln2(x))
        return self.ln_f(x)

    def last_scores(self, items: torch.Tensor, lengths: torch.Tensor,
                    interventions: Mapping[str, Intervention] | None = None, exclude_seen: bool = True,
                    compiled: bool = True) -> torch.Tensor:
        """Item scores (B, V) at each row's last position, the history's items at -inf with
        ``exclude_seen``: what a recommendation ranks. Runs the compiled pass where one is installed
        and takes these interventions (unless ``compiled`` is False: the eager pass it is checked on)."""
        if compiled and self.compiled is not None:
            scores = self.compiled(items, lengths, interventions, exclude_seen)
            if scores is not None:
                return scores
        scores = self.scores(self.forward_last(items, lengths, interventions=interventions))
        return mask_seen(scores, items) if exclude_seen else scores

    def item_weights(self) -> torch.Tensor:
        """Output head (tied to the input embedding), without the padding row: (V, d)."""
        return self.item_emb.weight[1:]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over items 1..V for hidden vectors (..., d); column j is dense index j + 1."""
        return hidden @ self.item_weights().T

    def last_hidden(self, out: ModelOutput, lengths: torch.Tensor) -> torch.Tensor:
        return out.hidden[torch.arange(len(lengths), device=lengths.device), lengths - 1]
