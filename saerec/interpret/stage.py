"""The interpret stage: RUN/activations/test + RUN/sae -> RUN/interpret/.

Streams test-user activations once; for every position it takes the SAE codes and the raw block
neurons, and the binary attributes of the item *at* that position. Writes:

- ``feature_attribute.parquet``: every (feature, attribute) pair: correlation, AUC, sensitivity, precision
- ``attributes.parquet``: per attribute, the top SAE feature and top neuron (by correlation) and their metrics
- ``catalog.parquet``: per feature, its label (best attribute), firing frequency, top-activating
  positions, promoted items
- ``summary.json``: ``mean_top_correlation_sae``/``_neurons`` over genres (the paper's score) and over all attributes
- plots (Figures 2, 4, 5) and ``report.md``
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from ..activations.store import count_rows, iter_batches, to_tensor
from ..atomic import write_parquet
from ..data.attributes import attribute_columns, genre_columns
from ..model.checkpoint import load_model
from ..progress import Progress
from ..contract import Stage
from ..rundir import A, RunDir
from ..sae.base import load_sae
from ..sae.splice import splice
from .stats import StreamedAttributeStats

log = logging.getLogger("saerec.interpret")


class TopActivations:
    """The ``k`` highest activations of every feature with the (user, position, item) they came from."""

    def __init__(self, n_features: int, k: int = 10):
        self.k = k
        self.vals = torch.full((k, n_features), -1.0)
        self.meta = torch.zeros((k, n_features, 3), dtype=torch.long)

    def update(self, f: torch.Tensor, meta: torch.Tensor) -> None:
        """f: (B, m) codes; meta: (B, 3) user, position, item of each row."""
        top = torch.cat([self.vals, f]).topk(self.k, dim=0)          # indices < k: kept from before
        idx = top.indices
        kept = self.meta.gather(0, idx.clamp(max=self.k - 1)[:, :, None].expand(-1, -1, 3))
        new = meta[(idx - self.k).clamp(min=0)]                       # (k, m, 3), no (B, m, 3) copy
        self.vals = top.values
        self.meta = torch.where((idx < self.k)[:, :, None], kept, new)


def promoted_items(model, sae, layer: str, inputs: list[np.ndarray], features: np.ndarray, value: float,
                   top: int = 10, users: int = 64, max_scores: int = 1 << 24) -> dict[int, tuple[np.ndarray, ...]]:
    """Items whose logits rise most when a feature is added at the last position (delta splice),
    averaged over a sample of histories: the feature's effect pushed through the rest of the model.
    Per feature: (promoted dense indices, their logit change, demoted dense indices, their change),
    the demoted ones being those whose logits fall most.

    The edit changes the last position only, so the sample is run once (``prefill_last``) and each
    feature's edited last step is replayed through the later blocks with the cached keys and values,
    many features per replay: about one forward pass for all features instead of one per feature.
    """
    from ..model.interface import Where
    from ..train.batching import pad_inputs

    sample = inputs[:users]
    items, lengths = pad_inputs(sample)
    feats = torch.as_tensor(np.asarray(features, dtype=np.int64))
    U = len(sample)
    per = max(1, max_scores // (U * model.n_items))               # features per replay: bounded score memory
    out = {}
    bar = Progress("interpret: promoted items", len(feats), "features")
    with torch.no_grad():
        cache = model.prefill_last(items, lengths, layer)
        base = model.scores(model.replay_last(cache, cache.state[:, None])[:, 0])      # (U, V)
        for lo in range(0, len(feats), per):
            chunk = feats[lo: lo + per]
            n = len(chunk)
            col = chunk.repeat(U)                                   # row u * n + v edits feature chunk[v]

            def add(f, where, col=col):
                f[where.rows, col[where.rows]] += value
                return f

            rows = torch.arange(U * n)
            h = splice(sae, "delta", edit=add, positions="last").fn(
                cache.state.repeat_interleave(n, dim=0), Where(rows, (lengths - 1).repeat_interleave(n),
                                                             torch.ones(U * n, dtype=torch.bool)))
            final = model.replay_last(cache, h.view(U, n, -1))     # (U, n, d)
            delta = (model.scores(final) - base[:, None, :]).mean(0)
            vals, idx = delta.topk(top, dim=1)
            low = (-delta).topk(top, dim=1)
            for r, j in enumerate(chunk.tolist()):
                out[int(j)] = (idx[r].numpy() + 1, vals[r].numpy(), low.indices[r].numpy() + 1, -low.values[r].numpy())
            bar.update(n)
    return out


def interpret_stage(run: RunDir, batch_rows: int = 8192, auc_sample: int = 200_000, top_k: int = 10,
                    promote_value: float = 5.0) -> dict:
    sae, meta = load_sae(run.path(A.SAE))
    layer = meta["layer"]
    items = run.read_parquet(A.CATALOGUE)
    attrs = attribute_columns(items)
    genres = genre_columns(items)
    lookup = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    Y_all = torch.from_numpy(items[attrs].to_numpy(dtype=bool).copy())
    m, d = sae.cfg.n_latents, sae.d_in
    sae_stats = StreamedAttributeStats(m, len(attrs), auc_sample)
    neuron_stats = StreamedAttributeStats(d, len(attrs), auc_sample)
    tops = TopActivations(m, top_k)
    folder = run.path(A.ACT_TEST)
    bar = Progress("interpret: test activations", count_rows(folder), "positions")
    with torch.no_grad():
        for rb in iter_batches(folder, ("user_id", "position", "item_id", "activation"), batch_rows):
            bar.update(rb.num_rows)
            h = to_tensor(rb.column("activation"))
            item_ids = rb.column("item_id").to_numpy()
            Y = Y_all[torch.from_numpy(lookup[item_ids].to_numpy().copy())]
            codes = sae.encode(sae.normalizer(h))
            sae_stats.update(codes, Y)
            neuron_stats.update(h, Y)
            tops.update(codes, torch.from_numpy(np.stack([rb.column("user_id").to_numpy(),
                                                          rb.column("position").to_numpy().astype(np.int64),
                                                          item_ids], 1)))
    S, N = sae_stats.result(), neuron_stats.result()
    run.stage(A.INTERPRET)

    pair = pd.DataFrame({
        "feature": np.repeat(np.arange(m), len(attrs)), "attribute": np.tile(attrs, m),
        "correlation": S.correlation.ravel(), "auc": S.auc.ravel(),
        "sensitivity": S.sensitivity.ravel(), "precision": S.precision.ravel()})
    write_parquet(pair, run.path(A.PAIRS))

    best_f, best_n = S.correlation.argmax(0), N.correlation.argmax(0)
    ar = np.arange(len(attrs))
    per_attr = pd.DataFrame({
        "attribute": attrs, "is_genre": [a in genres for a in attrs], "share": S.attribute_share,
        "sae_feature": best_f, "sae_correlation": S.correlation[best_f, ar], "sae_auc": S.auc[best_f, ar],
        "sae_sensitivity": S.sensitivity[best_f, ar], "sae_precision": S.precision[best_f, ar],
        "neuron": best_n, "neuron_correlation": N.correlation[best_n, ar], "neuron_auc": N.auc[best_n, ar],
    }).sort_values("sae_correlation", ascending=False)
    write_parquet(per_attr, run.path(A.ATTRIBUTES))

    # catalog ---------------------------------------------------------------------------
    label = S.correlation.argmax(1)
    model, _ = load_model(run.recommender)
    from ..model.checkpoint import model_index, test_pairs
    # the test users' sequences only, not the whole log: this stage's memory must not grow with it
    index = model_index(run.recommender)
    inputs = test_pairs(run, model.max_len, index=index).inputs
    alive = np.flatnonzero(S.firing > 0)
    promo = promoted_items(model, sae, layer, inputs, alive, promote_value)
    ids = index.item_ids
    catalog = pd.DataFrame({
        "feature": np.arange(m),
        "label": [attrs[a] for a in label],
        "label_correlation": S.correlation[np.arange(m), label],
        "label_auc": S.auc[np.arange(m), label],
        "label_sensitivity": S.sensitivity[np.arange(m), label],
        "label_precision": S.precision[np.arange(m), label],
        "firing_frequency": S.firing,
        "max_activation": tops.vals[0].numpy(),
        "top_users": [tops.meta[:, j, 0].tolist() for j in range(m)],
        "top_positions": [tops.meta[:, j, 1].tolist() for j in range(m)],
        "top_items": [tops.meta[:, j, 2].tolist() for j in range(m)],
        "top_values": [tops.vals[:, j].tolist() for j in range(m)],
        "promoted_items": [ids[promo[j][0] - 1].tolist() if j in promo else [] for j in range(m)],
        "promoted_logit_change": [promo[j][1].tolist() if j in promo else [] for j in range(m)],
        "demoted_items": [ids[promo[j][2] - 1].tolist() if j in promo else [] for j in range(m)],
        "demoted_logit_change": [promo[j][3].tolist() if j in promo else [] for j in range(m)],
    })
    write_parquet(catalog, run.path(A.FEATURES))

    g = per_attr[per_attr["is_genre"]]
    summary = {
        "mean_top_correlation_sae": float(g["sae_correlation"].mean()) if len(g) else None,
        "mean_top_correlation_neurons": float(g["neuron_correlation"].mean()) if len(g) else None,
        "mean_top_auc_sae": float(g["sae_auc"].mean()) if len(g) else None,
        "mean_top_sensitivity_sae": float(g["sae_sensitivity"].mean()) if len(g) else None,
        "mean_top_correlation_sae_all_attributes": float(per_attr["sae_correlation"].mean()),
        "mean_top_correlation_neurons_all_attributes": float(per_attr["neuron_correlation"].mean()),
        "positions": S.n, "auc_sample_rows": S.auc_rows, "layer": layer, "features": m,
        "alive_features": int(len(alive)),
        "attributes": per_attr.to_dict(orient="records"),
    }
    run.write_json(A.INTERPRET_SUMMARY, summary)
    from .report import write_plots_and_report
    write_plots_and_report(run, S, N, attrs, genres, per_attr, catalog, items, sae_stats, summary)
    return summary


def run_interpret(run: RunDir, cfg) -> dict:
    return interpret_stage(run)


STAGE = Stage("interpret", (), (A.SAE_WEIGHTS, A.ACT_TEST, A.CATALOGUE), (A.FEATURES, A.INTERPRET_SUMMARY),
              run_interpret)
