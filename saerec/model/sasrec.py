"""SASRec (Kang & McAuley, ICDM 2018): a causal transformer over item ids with its own block layout.

The original block (kang205's TensorFlow code; pmixer/SASRec.pytorch before its pre-LN option)::

    q = LN_attn(x);  x = LN_ffn(q + MHA(query=q, key=x, value=x));  x = x + FFN(x)

with a ReLU point-wise FFN of width d, embeddings scaled by sqrt(d), learned positions, a final
LayerNorm and the output tied to the input item table. The residual of the attention is taken
from the *normalised* input, and the keys and values from the raw one: unlike GPTRec's pre-LN
blocks, the stream is normalised inside every block. Sequences are right-padded here (the original
left-pads): with causal attention a real position never sees the padding after it.

Trained with BCE and one sampled negative per position (the original) or full-softmax CE
("SASRec+"): ``train.loss``. Named states as GPTRec's: ``embed``, ``block.i``, ``final``.
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
from .interface import BlockRecommender, Intervention, ModelOutput
from .laststep import causal_prefill, causal_replay


class SASRecBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.attn_ln = nn.LayerNorm(d, eps=1e-8)
        self.q, self.kv, self.out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ffn_ln = nn.LayerNorm(d, eps=1e-8)
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.n_heads = cfg.n_heads
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H = self.n_heads
        q_in = self.attn_ln(x)
        q = self.q(q_in)
        k, v = self.kv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = attention(q, k, v, is_causal=True)
        x = self.ffn_ln(q_in + self.drop(self.out(y.transpose(1, 2).reshape(B, T, C))))
        return x + self.drop(self.fc2(self.drop(F.relu(self.fc1(x)))))


def _keys_values(blk: SASRecBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SASRec's keys and values come from the block's raw input (only the query is normalised)."""
    return blk.kv(x).split(x.shape[-1], dim=2)


def _last_step(blk: SASRecBlock, x: torch.Tensor, attend) -> torch.Tensor:
    """:meth:`SASRecBlock.forward` at the query position of n variants (B, n, d), eval mode."""
    q_in = blk.attn_ln(x)
    k, v = _keys_values(blk, x)
    x = blk.ffn_ln(q_in + blk.out(attend(blk.q(q_in), k, v)))
    return x + blk.fc2(F.relu(blk.fc1(x)))


class SASRec(BlockRecommender):
    def __init__(self, cfg: ModelConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        self.item_emb = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=1e-8)
        for name, p in self.named_parameters():            # the original: Xavier-normal on every matrix
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()


    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None, capture: Sequence[str] = (),
                interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        lengths, visit = self.start_pass(items, lengths, capture, interventions)
        T = items.shape[1]
        pos = torch.arange(T, device=items.device)
        x = self.item_emb(items) * math.sqrt(self.cfg.d_model) + self.pos_emb(pos)[None]
        x = visit("embed", self.drop(x))
        for i, block in enumerate(self.blocks):
            x = visit(f"block.{i}", block(x))
        return ModelOutput(visit("final", self.ln_f(x)), visit.captured)

    def prefill_last(self, items: torch.Tensor, lengths: torch.Tensor, name: str):
        """Fast path (:mod:`.laststep`): the later blocks' keys and values computed once, so a
        steering sweep at ``block.0`` replays one position per variant instead of a whole query."""
        return causal_prefill(self, items, lengths, name, _keys_values)

    def replay_last(self, cache, state: torch.Tensor) -> torch.Tensor:
        return causal_replay(self, cache, state, _last_step)

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight[1:]
