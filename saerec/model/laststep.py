"""Scoring many edited variants of one history's query state: the engine behind steering sweeps,
interpretation's promoted items and explanations' total effects.

Edits at the query position only (the paper's steering) leave every earlier position unchanged, so
for a causal model their keys and values in the later blocks can be computed once and shared by any
number of edited variants of the last step: the same trick as a KV cache in autoregressive decoding
(:func:`causal_prefill` / :func:`causal_replay`: GPT's pre-LN blocks, and SASRec's through its own
block functions). Any other model gets
the generic fallback (:func:`generic_prefill` / :func:`generic_replay`): one query pass per variant,
the variant spliced in at the query position by an :class:`~.interface.Intervention`. Both give the
same scores up to float rounding (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .interface import Intervention, Where


@dataclass
class LastStepCache:
    """What the query position needs from the rest of each history, for the blocks after a named state."""

    start: int                     # first block to replay
    state: torch.Tensor            # (B, d) the named state at each history's query position
    keys: list[torch.Tensor]       # per replayed block: (B, H, T, hd)
    values: list[torch.Tensor]
    lengths: torch.Tensor          # (B,)
    final: bool                    # the named state is "final" (nothing to replay)


@dataclass
class GenericCache:
    """The generic fallback's cache: the histories themselves and the state to replace."""

    items: torch.Tensor
    lengths: torch.Tensor
    name: str
    state: torch.Tensor            # (B, d) the named state at each history's query position


@torch.no_grad()
def generic_prefill(model, items: torch.Tensor, lengths: torch.Tensor, name: str) -> GenericCache:
    return GenericCache(items, lengths, name, model.query(items, lengths, capture=[name]).captured[name])


def generic_replay(model, cache: GenericCache, state: torch.Tensor, max_rows: int = 4096) -> torch.Tensor:
    """(B, n, d) ``final`` vectors: each history run n times, variant v spliced in at the query position.
    The ``final`` state itself needs no run: it is what the head scores, so its variants are the answer
    (a model without its own replay steered at ``final`` ran n full passes before). Differentiable in
    ``state``, as :func:`causal_replay`; scoring callers run it under ``no_grad``."""
    if cache.name == "final":
        return state
    B, n, d = state.shape
    flat = state.reshape(B * n, d)
    out = []
    for s in range(0, B * n, max_rows):
        rows = torch.arange(s, min(s + max_rows, B * n))
        hist = rows // n
        iv = Intervention(lambda h, where, rows=rows: flat[rows[where.rows]].to(h.dtype), "last")
        out.append(model.query(cache.items[hist], cache.lengths[hist], interventions={cache.name: iv}).hidden)
    return torch.cat(out).view(B, n, -1)


def start_block(model, name: str) -> int:
    """The first block after a named state (``embed``: 0; ``final``: the number of blocks)."""
    if name not in model.state_names:
        raise KeyError(f"unknown hidden state {name!r}; known: {model.state_names}")
    return 0 if name == "embed" else len(model.blocks) if name == "final" else int(name.split(".")[1]) + 1


def gpt_keys_values(blk, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A pre-LN GPT block's keys and values (B, T, C) for its input ``x``."""
    _, k, v = blk.attn.qkv(blk.ln1(x)).split(x.shape[-1], dim=2)
    return k, v


def gpt_last_step(blk, x: torch.Tensor, attend) -> torch.Tensor:
    """A pre-LN GPT block (``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``, ``mlp``) at the query
    position of n variants (B, n, C); ``attend(q, k, v)`` is attention over the cached keys plus
    the variant's own."""
    q, k, v = blk.attn.qkv(blk.ln1(x)).split(x.shape[-1], dim=2)
    x = x + blk.attn.proj(attend(q, k, v))
    return x + blk.mlp(blk.ln2(x))


@torch.no_grad()
def causal_prefill(model, items: torch.Tensor, lengths: torch.Tensor, name: str,
                   keys_values=gpt_keys_values) -> LastStepCache:
    """One forward pass that keeps what :func:`causal_replay` needs (eval mode only): the input of
    every later block, turned into its keys and values by ``keys_values(block, x)`` (GPT's pre-LN
    layout by default; SASRec passes its own)."""
    start = start_block(model, name)
    inputs = [name] + [f"block.{i - 1}" for i in range(start + 1, len(model.blocks))]
    out = model(items, lengths, capture=inputs)
    B, T = items.shape
    C, H = model.cfg.d_model, model.cfg.n_heads
    keys, values = [], []
    for i, x_in in zip(range(start, len(model.blocks)), inputs):
        k, v = keys_values(model.blocks[i], out.captured[x_in])
        keys.append(k.reshape(B, T, H, C // H).transpose(1, 2))
        values.append(v.reshape(B, T, H, C // H).transpose(1, 2))
    state = out.captured[name][torch.arange(B), lengths - 1]
    return LastStepCache(start, state, keys, values, lengths, name == "final")


def causal_replay(model, cache: LastStepCache, state: torch.Tensor, last_step=gpt_last_step) -> torch.Tensor:
    """Final hidden vectors (B, n, d) at the last position for n edited variants (B, n, d) of the
    cached state, each later block run at that position only by ``last_step(block, x, attend)``.
    Equal to a full forward with the edit at the last position (up to float rounding).
    Differentiable in ``state`` (per-user PopSteer fits edits through it); callers that only score
    run it under ``no_grad``/``inference_mode``."""
    if cache.final:
        return state
    B, n, C = state.shape
    H = model.cfg.n_heads
    hd = C // H
    T = cache.keys[0].shape[2] if cache.keys else 0
    before = torch.arange(T)[None, :] < (cache.lengths - 1)[:, None]          # keys strictly before last

    def attention_over(K, V):
        def attend(q, k, v):
            q, k, v = (t.reshape(B, n, H, hd) for t in (q, k, v))
            s_old = torch.einsum("bnhd,bhtd->bnht", q, K) / math.sqrt(hd)
            s_old = s_old.masked_fill(~before[:, None, None, :], float("-inf"))
            s_new = (q * k).sum(-1, keepdim=True) / math.sqrt(hd)
            att = torch.softmax(torch.cat([s_old, s_new], dim=-1), dim=-1)
            y = torch.einsum("bnht,bhtd->bnhd", att[..., :T], V) + att[..., T:] * v
            return y.reshape(B, n, C)
        return attend

    x = state
    for blk, K, V in zip(model.blocks[cache.start:], cache.keys, cache.values):
        x = last_step(blk, x, attention_over(K, V))
    return model.ln_f(x)


def replay_where(lengths: torch.Tensor, n: int, per_row: bool = False) -> Where:
    """The :class:`Where` of n variants per history, row u * n + v: all at the query position. Each
    selects row v of an n-row edit table (variant v is the same edit for every history), or with
    ``per_row`` row u * n + v of a (b * n)-row one (each history its own variants)."""
    b = len(lengths)
    return Where(torch.arange(b * n) if per_row else torch.arange(n).repeat(b), (lengths - 1).repeat_interleave(n),
                 torch.ones(b * n, dtype=torch.bool))
