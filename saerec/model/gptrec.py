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
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import attention
from .dropout import Dropout
from .interface import BlockRecommender, Intervention, ModelOutput, Where, position_mask, replaced
from .laststep import causal_prefill, causal_replay


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
        y = attention(q, k, v, is_causal=True,
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


class GPTRec(BlockRecommender):
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


    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None,
                capture: Sequence[str] = (), interventions: Mapping[str, Intervention] | None = None,
                _blocks: int | None = None) -> ModelOutput:
        """items: (B, T) right-padded dense indices. Returns the final hidden states and any captured ones.

        ``_blocks`` (internal, for :meth:`forward_last`): stop after that many blocks, before ``final``
        (``hidden`` is then the state after block ``_blocks - 1``, or ``embed`` for 0).
        """
        lengths, visit = self.start_pass(items, lengths, capture, interventions)
        x = visit("embed", self.embed(items))
        for i, block in enumerate(self.blocks):
            if i == _blocks:                     # (not self.blocks[:n]: slicing builds a new ModuleList)
                break
            x = visit(f"block.{i}", block(x))
        if _blocks is not None:
            return ModelOutput(x, visit.captured)
        x = visit("final", self.ln_f(x))
        return ModelOutput(x, visit.captured)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """The ``embed`` state: item plus position embeddings (then dropout), (B, T) -> (B, T, d)."""
        pos = torch.arange(items.shape[1], device=items.device)
        return self.drop(self.item_emb(items) + self.pos_emb(pos)[None])

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
            return replaced(h, sel, iv, Where(sel, cols[sel], torch.ones_like(sel, dtype=torch.bool)))

        x = visit(f"block.{len(early)}", x)
        return visit("final", self.ln_f(x))

    def query(self, items: torch.Tensor, lengths: torch.Tensor, capture: Sequence[str] = (),
              interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        """The causal query: the last item's state. Without captures, :meth:`forward_last`."""
        if capture:
            return super().query(items, lengths, capture, interventions)
        return ModelOutput(self.forward_last(items, lengths, interventions))

    def prefill_last(self, items: torch.Tensor, lengths: torch.Tensor, name: str):
        """Fast path: keys and values of the later blocks computed once (:mod:`.laststep`)."""
        return causal_prefill(self, items, lengths, name)

    def replay_last(self, cache, state: torch.Tensor) -> torch.Tensor:
        return causal_replay(self, cache, state)

    def item_weights(self) -> torch.Tensor:
        """Output head (tied to the input embedding), without the padding row: (V, d)."""
        return self.item_emb.weight[1:]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over items 1..V for hidden vectors (..., d); column j is dense index j + 1."""
        return hidden @ self.item_weights().T
