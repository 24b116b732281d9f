"""What the feature browser shows, read from ``RUN/`` into JSON-ready dicts (one per data file).

The pages are static: every number is computed here, once, from the artifacts the stages wrote
(``interpret/``: catalog, feature x attribute table, attributes; ``steer/sweep.parquet`` when the
sweep ran; ``activations/test`` for histograms and shaded histories, see :mod:`.activity`). The
sample users' recommendations and explanations are the service's own responses in the proto3 JSON
mapping, so a static user page and the live JSON API render through the same code.

Files (keys of :func:`site_data`'s result, written as ``data/<key>.js``):
``meta``, ``index`` (one compact row per feature), ``items`` (titles and genres), ``attributes``,
``users`` (sample users with recommendations and explanations), ``histories`` (test users'
histories for the playground), ``features/<id>`` (one per feature), ``evaluation`` (what
``saerec sae-eval`` wrote, see :mod:`.evaluation`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import RunError
from ..layout import A
from ..rundir import RunDir

REQUIRED = (A.WEIGHTS, A.SAE_WEIGHTS, A.FEATURES, A.PAIRS, A.ATTRIBUTES, A.ACT_TEST)


def _f(x) -> float | None:
    """A JSON number (NaN and infinities become null: JSON has no NaN)."""
    x = float(x)
    return round(x, 5) if math.isfinite(x) else None


def check_run(run: RunDir) -> None:
    for rel in REQUIRED:
        if not run.has(rel):
            raise RunError(f"{run.root / rel} is missing; the browser needs a run through `saerec interpret` "
                           f"(run `saerec run --run {run.root}` or the missing stage first)")


def _ndcg_column(sweep: pd.DataFrame) -> str:
    return next(c for c in sweep.columns if c.startswith("ndcg@") and not c.endswith("_last"))


def _curves(sweep: pd.DataFrame | None, mask) -> dict:
    """Sweep curves (value -> target share, NDCG) of the rows ``mask`` selects, by attribute and curve."""
    if sweep is None:
        return {}
    nd = _ndcg_column(sweep)
    out: dict = {}
    for (attr, curve), g in sweep[mask(sweep)].groupby(["attribute", "curve"], sort=False):
        g = g.sort_values("value")
        out.setdefault(attr, {})[curve] = {"target": int(g["target"].iloc[0]), "values": [_f(v) for v in g["value"]],
                                           "share": [_f(v) for v in g["target_share"]],
                                           "ndcg": [_f(v) for v in g[nd]]}
    return out


def _items(ids, vals) -> list:
    return [[int(i), _f(v)] for i, v in zip(ids, vals)]


def site_data(run: RunDir, users: int = 20, bins: int = 24, window: int = 12, progress: bool = True,
              service=None) -> dict:
    """Every data file of the site. ``users``: test users with a precomputed user page; ``service``: a
    loaded :class:`~saerec.serving.service.RecommenderService` of ``run`` to reuse."""
    from ..data.attributes import attribute_columns, genre_columns
    from ..serving.service import RecommenderService
    from .activity import measure_activity
    from .evaluation import evaluation_data

    check_run(run)
    service = service or RecommenderService(run)
    steerer, items = service.steerer, service.items
    catalog = service.catalog.features                                # indexed by feature id
    m = len(catalog)
    table = items.items
    attrs, genres = attribute_columns(table), genre_columns(table)
    pair = run.read_parquet(A.PAIRS)
    corr = pair.pivot(index="feature", columns="attribute", values="correlation").reindex(columns=attrs).to_numpy()
    per_attr = run.read_parquet(A.ATTRIBUTES).set_index("attribute")
    summary = run.read_json(A.INTERPRET_SUMMARY) if run.has(A.INTERPRET_SUMMARY) else {}
    sweep = run.read_parquet(A.SWEEP) if run.has(A.SWEEP) else None

    demoted = _demoted(run, steerer, catalog) if "demoted_items" not in catalog else \
        {j: (list(a), list(b)) for j, a, b in zip(catalog.index, catalog["demoted_items"], catalog["demoted_logit_change"])}

    label_idx = np.array([attrs.index(lbl) if lbl in attrs else -1 for lbl in catalog["label"]])
    has_attr = table[attrs].to_numpy(dtype=bool)
    L = np.where(label_idx[None, :] >= 0, has_attr[:, label_idx.clip(0)], False)           # (items, m)
    row = pd.Series(np.arange(len(table)), index=table["item_id"].to_numpy())
    act = measure_activity(run.path(A.ACT_TEST), steerer.sae, catalog, L, row, bins, window,
                           progress=progress)
    windows = {k: g for k, g in act.windows.groupby("feature")}
    top_of = per_attr.reset_index().groupby("sae_feature")["attribute"].apply(list).to_dict()

    files: dict = {}
    index = []
    for j in range(m):
        c = catalog.loc[j]
        dead = float(c["firing_frequency"]) <= 0
        tops = [(int(i), float(v)) for i, v in zip(c["top_items"], c["top_values"]) if v > 0]
        index.append([j, str(c["label"]), _f(c["label_correlation"]), _f(c.get("label_auc", np.nan)),
                      _f(c["firing_frequency"]), _f(c["max_activation"]), int(dead),
                      list(dict.fromkeys([i for i, _ in tops][:10] + [int(i) for i in list(c["promoted_items"])[:5]]))[:8]])
        w = windows.get(j)
        shaded = []
        for slot, (u, p, v) in enumerate(zip(c["top_users"], c["top_positions"], c["top_values"])):
            if v <= 0:
                continue
            g = w[w["slot"] == slot].sort_values("offset", ascending=False) if w is not None else w
            shaded.append({"user": int(u), "position": int(p), "value": _f(v),
                           "items": [] if g is None else _items(g["item_id"], g["value"])})
        d_ids, d_vals = demoted.get(j, ([], []))
        files[f"features/{j}"] = {
            "id": j, "label": str(c["label"]), "dead": dead, "top_of": top_of.get(j, []),
            "metrics": {k: _f(c[k]) for k in ("label_correlation", "label_auc", "label_sensitivity",
                                              "label_precision", "firing_frequency", "max_activation",
                                              "label_confidence") if k in c},
            "labelled": bool(c["labelled"]),          # False: shown as unlabelled (sae-eval's label confidence)
            "correlation": [_f(x) for x in corr[j]],
            "histogram": {"max": _f(act.edges_max[j]), "bins": bins, "absent": act.active[j, 0].tolist(),
                          "present": act.active[j, 1].tolist(), "zero_absent": float(act.inactive[j, 0]),
                          "zero_present": float(act.inactive[j, 1])},
            "tops": shaded,
            "promoted": _items(c["promoted_items"], c["promoted_logit_change"]),
            "demoted": _items(d_ids, d_vals),
            "steering": _curves(sweep, lambda s, j=j: (s["target"] == j) & (s["method"] == "sae")),
        }
    files["index"] = {"columns": ["id", "label", "correlation", "auc", "frequency", "max_activation", "dead",
                                  "items"], "rows": index}
    files["items"] = {str(int(i)): [str(t), [g for g in str(gs).split("|") if g]]
                      for i, t, gs in zip(table["item_id"], table["title"], table["genres"])}
    curves = _curves(sweep, lambda s: s["attribute"] == s["attribute"])
    files["attributes"] = [_attribute(a, per_attr.loc[a], corr[:, i], a in genres, curves.get(a, {}))
                           for i, a in enumerate(attrs) if a in per_attr.index]
    files["users"], files["histories"] = _users(run, service, users)
    files["meta"] = {
        "run": run.root.name, "layer": steerer.layer, "features": m, "attributes": attrs, "genres": genres,
        "alive": int((catalog["firing_frequency"] > 0).sum()), "items": len(table), "bins": bins,
        "model": type(steerer.model).__name__, "model_version": service.version,
        "mean_top_correlation_sae": summary.get("mean_top_correlation_sae"),
        "mean_top_correlation_neurons": summary.get("mean_top_correlation_neurons"),
        "sweep": None if sweep is None else {"values": sorted(set(float(v) for v in sweep["value"])),
                                             "curves": list(dict.fromkeys(sweep["curve"])),
                                             "attributes": list(dict.fromkeys(sweep["attribute"]))},
    }
    files["evaluation"] = evaluation_data(run)
    files["meta"]["label_threshold"] = files["evaluation"].get("summary", {}).get("min_label_confidence")
    return files


def _attribute(name: str, r: pd.Series, corr: np.ndarray, is_genre: bool, curves: dict) -> dict:
    order = np.argsort(-np.nan_to_num(corr, nan=-2))[:10]
    return {"name": name, "is_genre": bool(is_genre), "share": _f(r["share"]),
            "sae": {"feature": int(r["sae_feature"]), "correlation": _f(r["sae_correlation"]), "auc": _f(r["sae_auc"]),
                    "sensitivity": _f(r["sae_sensitivity"]), "precision": _f(r["sae_precision"])},
            "neuron": {"index": int(r["neuron"]), "correlation": _f(r["neuron_correlation"]), "auc": _f(r["neuron_auc"])},
            "top_features": [[int(j), _f(corr[j])] for j in order], "curves": curves}


def _users(run: RunDir, service, n: int) -> tuple[list, dict]:
    """The first ``n`` test users with the service's recommendations and explanation of their history
    (their held-out item is the next one), and every test user's history for the playground."""
    from google.protobuf.json_format import MessageToDict

    from ..model.checkpoint import test_pairs
    from ..v1 import recommender_pb2 as pb

    test = test_pairs(run, service.steerer.model.max_len)     # the test users only, not the log
    users, inputs, targets = test.users, test.inputs, test.targets
    ids = service.items.item_ids
    out = []
    for u, x, t in list(zip(users, inputs, targets))[:n]:
        history = ids[np.asarray(x) - 1].tolist()
        out.append({"user": int(u), "history": history, "held_out": int(ids[t - 1]),
                    "recommend": MessageToDict(service.recommend(pb.RecommendRequest(history=history, k=10))),
                    "explain": MessageToDict(service.explain(pb.ExplainRequest(history=history, k=10, features=8)))})
    histories = {str(int(u)): ids[np.asarray(x) - 1].tolist() for u, x in list(zip(users, inputs))[:1000]}
    return out, histories


def _demoted(run: RunDir, steerer, catalog: pd.DataFrame) -> dict:
    """Demoted items for a catalog written before ``saerec interpret`` kept them (same computation)."""
    from ..interpret.stage import promoted_items
    from ..model.checkpoint import test_pairs

    inputs = test_pairs(run, steerer.model.max_len).inputs
    alive = np.flatnonzero(catalog["firing_frequency"].to_numpy() > 0)
    promo = promoted_items(steerer.model, steerer.sae, steerer.layer, inputs, alive, 5.0)
    ids = steerer.items.item_ids
    return {j: (ids[p[2] - 1].tolist(), p[3].tolist()) for j, p in promo.items()}
