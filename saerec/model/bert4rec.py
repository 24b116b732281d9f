"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional encoder over item ids trained to fill masked items.

As the paper's authors ran it (HF ``BertModel`` fed with their own item embeddings): learned
positions, an embedding LayerNorm, post-LN blocks (``x = LN(x + MHA(x)); x = LN(x + FFN(x))``,
GELU FFN of width 4d), the output tied to the item table without bias. Training (``train.objective``
``cloze``, :mod:`saerec.train.objective`) replaces a share ``train.mask_prob`` (0.2, as the authors)
of the positions by the mask token and predicts the original items there with full-softmax CE.

Next-item inference appends the mask token after the history and reads its state: that position is
the *query* (:meth:`query_inputs`), where ``"last"`` interventions act. The histories therefore hold
at most ``max_len - 1`` items. Attention sees every real position and no padding (right-padded
batches, a key-padding mask). Named states as GPTRec's: ``embed``, ``block.i``, ``final`` (the last
block's output, which the head scores).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .attention import attention
from .dropout import Dropout
from .interface import BlockRecommender, Intervention, ModelOutput, append_token


class BertBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.fc, self.fc_out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.n_heads = cfg.n_heads
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, d); keep (B, 1, 1, T) bool: the real keys."""
        B, T, C = x.shape
        H = self.n_heads
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        y = attention(q, k, v, attn_mask=keep)
        x = self.ln1(x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C))))
        return self.ln2(x + self.drop(self.fc_out(F.gelu(self.fc(x)))))


class BERT4Rec(BlockRecommender):
    def __init__(self, cfg: ModelConfig, n_items: int):
        super().__init__()
        self.cfg, self.n_items = cfg, n_items
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, cfg.d_model, padding_idx=0)   # 0 pad, 1..V items, V+1 mask
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.emb_ln = nn.LayerNorm(cfg.d_model, eps=1e-12)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(BertBlock(cfg) for _ in range(cfg.n_layers))
        for m in self.modules():                           # BERT's init: N(0, 0.02), zero biases
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    @property
    def state_names(self) -> list[str]:
        return ["embed", *(f"block.{i}" for i in range(len(self.blocks))), "final"]

    @property
    def max_len(self) -> int:
        return self.cfg.max_len - 1                         # one slot for the mask token

    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None, capture: Sequence[str] = (),
                interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        lengths, visit = self.start_pass(items, lengths, capture, interventions)
        T = items.shape[1]
        keep = (torch.arange(T, device=items.device)[None, :] < lengths[:, None])[:, None, None, :]
        pos = torch.arange(T, device=items.device)
        x = visit("embed", self.drop(self.emb_ln(self.item_emb(items) + self.pos_emb(pos)[None])))
        for i, block in enumerate(self.blocks):
            x = visit(f"block.{i}", block(x, keep))
        return ModelOutput(visit("final", x), visit.captured)

    def query_inputs(self, items: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The history with the mask token appended after its last item."""
        return append_token(items, lengths, self.mask_token, self.cfg.max_len)

    def item_weights(self) -> torch.Tensor:
        return self.item_emb.weight[1:self.n_items + 1]
