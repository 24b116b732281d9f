"""Why was an item recommended? SAE features at the last step and their effect on each item's score.

The layer's vector at the last step decomposes exactly as h = std·(Σ_j f_j W_dec[j] + b_dec) + mean
+ err. In GPTRec (pre-LN) everything a block adds after the layer is added to the same residual
stream, which reaches the item scores through the final LayerNorm and the tied item embeddings.
With the LayerNorm's scale frozen at its value for this history (standard direct-logit
attribution), that last map is linear, so feature j *directly* contributes

    contribution[j, i] = f_j · DE[j, i],   DE[j, i] = LN_frozen(std·W_dec[j]) · E_i

to item i's score, and the contributions of all active features add up exactly to the score change
from removing their decoded vector from the direct path (``direct_total``). A model without that
residual layout (SASRec's normalised blocks, BERT4Rec, an imported model) has no direct path to
read off, so its map is the Jacobian of the query's ``final`` state with respect to the layer's
vector at this history (a linearised total effect: attribution patching). Later blocks read the
feature too; ``ablation_change`` is the total change of the item's score when the feature is set
to 0 with the delta splice, computed with the full model either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..model.interface import mask_seen
from ..train.batching import pad_inputs
from .edits import ResolvedEdit
from .intervene import EditTable, Steerer


@dataclass
class Explanation:
    features: pd.DataFrame        # top active features at the last step: feature, label, activation, ...
    items: pd.DataFrame           # the recommendations: rank, index, item_id, title, genres, score
    contributions: pd.DataFrame   # (item, feature) pairs: direct_effect, contribution, ablation_change
    direct_total: np.ndarray      # (k,) Σ over *all* active features of the contributions to each item


def frozen_ln_map(model, x_last: torch.Tensor, layer: str):
    """The final LayerNorm as a linear map with its scale frozen at ``x_last`` (identity for "final")."""
    if layer == "final":
        return lambda v: v
    ln = model.ln_f
    sigma = torch.sqrt(x_last.var(unbiased=False) + ln.eps)
    return lambda v: ln.weight * (v - v.mean(-1, keepdim=True)) / sigma


def jacobian_map(model, items: torch.Tensor, lengths: torch.Tensor, layer: str, h: torch.Tensor):
    """The query's ``final`` state as a linear function of the layer's query vector, around ``h``."""
    from ..model.interface import Intervention

    def final(v: torch.Tensor) -> torch.Tensor:
        iv = Intervention(lambda x, where: v[None].to(x.dtype), "last")
        return model.query(items, lengths, interventions={layer: iv}).hidden[0]

    with torch.enable_grad():
        J = torch.autograd.functional.jacobian(final, h)              # (d_final, d_layer)
    return lambda v: v @ J.T


def direct_map(model, items: torch.Tensor, lengths: torch.Tensor, layer: str):
    """(the layer's query vector h, the linear map of a direction in it to the ``final`` state)."""
    from ..model.gptrec import GPTRec

    if isinstance(model, GPTRec):
        last_block = f"block.{len(model.blocks) - 1}" if len(model.blocks) else "embed"
        out = model.query(items, lengths, capture=[layer, last_block])
        return out.captured[layer][0], frozen_ln_map(model, out.captured[last_block][0], layer)
    h = model.query(items, lengths, capture=[layer]).captured[layer][0]
    return h, jacobian_map(model, items, lengths, layer, h)


def top_titles(steerer, j: int, n: int = 3) -> list[str]:
    """Titles of the feature's first ``n`` distinct top-activating items: what an unlabelled feature
    is shown with instead of a name."""
    cat, items = steerer.catalog, steerer.items
    if cat is None or items is None or "top_items" not in cat.features:
        return []
    ids = list(dict.fromkeys(int(i) for i in cat.features.at[j, "top_items"]))[:n]
    title = dict(zip(items.items["item_id"].tolist(), items.items["title"].astype(str).tolist()))
    return [title.get(i, f"item {i}") for i in ids]


@torch.no_grad()
def explain(steerer: Steerer, history: np.ndarray, k: int = 10, top_features: int = 8,
            exclude_seen: bool = True) -> Explanation:
    model, sae, norm, layer = steerer.model, steerer.sae, steerer.norm, steerer.layer
    history = steerer.truncate(history)
    items, lengths = pad_inputs([history])
    h, L = direct_map(model, items, lengths, layer)
    f = sae.encode(norm(h[None]))[0]                                   # (m,)
    raw = model.scores(model.query(items, lengths).hidden)             # (1, V)
    scores = mask_seen(raw, items) if exclude_seen else raw
    top = scores[0].topk(k)
    rec = top.indices + 1                                              # dense indices

    active = torch.nonzero(f > 0).flatten()
    E = model.item_weights()[rec - 1]                                  # (k, d)
    dirs = L(sae.W_dec[active] * norm.std.to(h))                       # (A, d) direct-path image of each direction
    DE = dirs @ E.T                                                    # (A, k)
    contrib = f[active, None] * DE                                     # (A, k)
    direct_total = contrib.sum(0).numpy()

    order = torch.argsort(f[active], descending=True)[:top_features]
    shown = active[order]
    # total effect: each shown feature set to 0 (delta splice), replayed through the later blocks
    variants = [[ResolvedEdit("sae", int(j), 0.0, "set", "last", "")] for j in shown.tolist()]
    fn = steerer.edit_fn(EditTable.build(variants), "delta")
    ablated = steerer._variant_scores([history], len(variants), fn, exclude_seen=False)[0]   # (n, V)
    ablation = (raw[:, rec - 1] - ablated[:, rec - 1]).numpy()      # (n, k): score lost without the feature

    cat = steerer.catalog
    label = (lambda j: cat.label(j)) if cat is not None else (lambda j: f"#{j}")
    corr = (lambda j: float(cat.features.at[j, "label_correlation"])) if cat is not None else (lambda j: np.nan)
    conf = (lambda j: cat.confidence(j)) if cat is not None else (lambda j: np.nan)
    feats = pd.DataFrame({"feature": shown.numpy(), "label": [label(j) for j in shown.tolist()],
                          "label_correlation": [corr(j) for j in shown.tolist()],
                          "label_confidence": [conf(j) for j in shown.tolist()],
                          "top_items": [top_titles(steerer, j) for j in shown.tolist()],
                          "activation": f[shown].numpy()})
    desc = steerer.items.describe(rec.numpy()) if steerer.items is not None else pd.DataFrame({"item_id": rec.numpy()})
    recs = pd.concat([pd.DataFrame({"rank": np.arange(1, k + 1), "index": rec.numpy()}), desc], axis=1)
    recs["score"] = top.values.numpy()
    rows = []
    for r in range(k):
        for n_, (j, a) in enumerate(zip(order.tolist(), shown.tolist())):
            rows.append({"rank": r + 1, "item_id": recs.at[r, "item_id"], "feature": a, "label": label(a),
                         "activation": float(f[a]), "direct_effect": float(DE[j, r]),
                         "contribution": float(contrib[j, r]), "ablation_change": float(ablation[n_, r])})
    return Explanation(feats, recs, pd.DataFrame(rows), direct_total)

