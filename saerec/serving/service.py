"""The recommender service without Ray: request validation, batched steered recommendations, the
feature catalog and explanations, protobuf in and out. The Ray Serve deployment wraps it.

Limits (documented in the proto and docs/serving.md): k in 1..1000 (0 means 10); at most
``MAX_STEERING`` edits per request; |value| <= 100 and finite; a history longer than the model's
``max_len`` keeps its most recent items (``truncated_items`` says how many were dropped; with
``exclude_seen`` the dropped ones are still not recommended); unknown item
ids are skipped and listed; a history with no known item gets the most popular items, unsteered,
flagged ``popularity_fallback``. Business rules (allow/deny lists, attribute filters) are a
candidate mask after steering (:mod:`.rules`); a RecommendBatch call carries at most ``MAX_BATCH``
requests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import SaerecError
from ..eval.ranking import length_batches
from ..rundir import A, RunDir
from ..steer import Edit, Steerer
from ..steer.edits import MAX_ABS_VALUE, ResolvedEdit
from ..steer.explain import explain
from ..v1 import recommender_pb2 as pb
from .rules import InvalidRequest, Rules

MAX_K = 1000
DEFAULT_K = 10
MAX_STEERING = 16
MAX_HISTORY_IDS = 100_000          # ids accepted in one request before truncation (bounds the work)
MAX_PAGE_SIZE = 1000
MAX_BATCH = 256                    # requests per RecommendBatch call
BATCH_TOKENS = 2048                # padded positions per forward pass: a batch is cut by history length
MODES = {pb.STEERING_MODE_UNSPECIFIED: "set", pb.STEERING_MODE_SET: "set", pb.STEERING_MODE_ADD: "add",
         pb.STEERING_MODE_SCALE: "scale"}
POSITIONS = {pb.STEERING_POSITION_UNSPECIFIED: "last", pb.STEERING_POSITION_LAST: "last",
             pb.STEERING_POSITION_ALL: "all"}
MODE_ENUM = {"set": pb.STEERING_MODE_SET, "add": pb.STEERING_MODE_ADD, "scale": pb.STEERING_MODE_SCALE}
POSITION_ENUM = {"last": pb.STEERING_POSITION_LAST, "all": pb.STEERING_POSITION_ALL}


@dataclass
class Prepared:
    """A validated Recommend request, ready to batch with others."""

    history: np.ndarray                       # dense indices, most recent max_len
    k: int
    exclude_seen: bool
    edits: list[ResolvedEdit] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    truncated: int = 0
    earlier: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # seen before ``history``: excluded too
    allowed: np.ndarray | None = None         # (V,) the business rules' eligible items (None: no rules)
    unsteered: bool = False                   # also answer the list without the edits


def model_version(run: RunDir) -> str:
    """Content hash of the weights a replica serves (GPTRec + SAE), 12 hex digits."""
    h = hashlib.sha256()
    for rel in (A.WEIGHTS, A.SAE_WEIGHTS):
        with open(run.root / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


class RecommenderService:
    def __init__(self, run: str | RunDir):
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.steerer = Steerer.from_run(self.run)
        if self.steerer.catalog is None:
            raise SaerecError(f"{self.run.root}: no feature catalog; run `saerec interpret --run {self.run.root}` first")
        self.items = self.steerer.items
        self.catalog = self.steerer.catalog
        self.version = model_version(self.run)
        counts = self.items.items["train_count"].to_numpy() if "train_count" in self.items.items else None
        self.popular = np.argsort(-counts, kind="stable") + 1 if counts is not None else np.arange(1, self.items.items.shape[0] + 1)
        self.counts = counts
        self.top_of_label = set(int(f) for f in self.catalog.attributes["sae_feature"])
        self.rules = Rules(self.items)
        # display fields by dense index (row 0 unused), as plain Python objects: no pandas per request
        t = self.items.items
        self._ids = [0] + [int(x) for x in t["item_id"]]
        self._titles = [""] + [str(x) for x in t["title"]]
        self._genres = [[]] + [[g for g in str(x).split("|") if g] for x in t["genres"]]
        self.n_items = self.steerer.model.n_items
        self._everything = np.ones(self.n_items, dtype=bool)

    # validation ------------------------------------------------------------------------
    def _history(self, ids, name: str = "history") -> tuple[np.ndarray, list[int], np.ndarray]:
        """The known items' dense indices the model sees (the most recent ``max_len``), the unknown ids,
        and the known items before those (dropped from the input, still seen)."""
        if len(ids) > MAX_HISTORY_IDS:
            raise InvalidRequest(name, f"{len(ids)} items; at most {MAX_HISTORY_IDS} are accepted")
        dense, unknown = self.items.to_index(np.fromiter(ids, dtype=np.int64, count=len(ids)))
        cut = max(0, len(dense) - self.steerer.model.max_len)
        return dense[cut:], unknown, dense[:cut]

    def _edit(self, i: int, s) -> Edit:
        name = f"steering[{i}]"
        target = s.WhichOneof("target")
        if target is None:
            raise InvalidRequest(f"{name}.target", "set feature_id or attribute")
        if s.mode not in MODES:
            raise InvalidRequest(f"{name}.mode", f"unknown mode {s.mode}")
        if s.position not in POSITIONS:
            raise InvalidRequest(f"{name}.position", f"unknown position {s.position}")
        if not np.isfinite(s.value) or abs(s.value) > MAX_ABS_VALUE:
            raise InvalidRequest(f"{name}.value", f"must be finite with |value| <= {MAX_ABS_VALUE:g}, got {s.value!r}")
        if target == "feature_id":
            n = self.steerer.sae.cfg.n_latents
            if not 0 <= s.feature_id < n:
                raise InvalidRequest(f"{name}.feature_id", f"unknown feature {s.feature_id}; features are 0..{n - 1} "
                                     "(ListFeatures lists them)")
            tgt = int(s.feature_id)
        else:
            if not s.attribute.strip():
                raise InvalidRequest(f"{name}.attribute", "empty attribute name")
            tgt = s.attribute
        return Edit(tgt, float(s.value), MODES[s.mode], POSITIONS[s.position])

    def prepare(self, req) -> Prepared:
        return self.for_history(self.prepare_rules(req), req.history)

    def prepare_rules(self, req) -> Prepared:
        """Everything of a request but its history (k, steering, exclude_seen, rules, include_unsteered),
        validated once: the offline job (:mod:`saerec.serving.offline`) applies it to every user with
        :meth:`for_history`."""
        k = req.k or DEFAULT_K
        if not 1 <= k <= MAX_K:
            raise InvalidRequest("k", f"must be in 1..{MAX_K}, got {req.k}")
        if len(req.steering) > MAX_STEERING:
            raise InvalidRequest("steering", f"{len(req.steering)} edits; at most {MAX_STEERING} per request")
        edits, seen = [], {}
        for i, s in enumerate(req.steering):
            e = self._edit(i, s)
            try:
                r = self.steerer.resolve(e)
            except SaerecError as err:
                raise InvalidRequest(f"steering[{i}].{'attribute' if isinstance(e.target, str) else 'feature_id'}",
                                     f"{err} (ListFeatures shows features and their labels)") from None
            if r.key in seen:
                raise InvalidRequest(f"steering[{i}]", f"feature {r.index} is already edited by steering[{seen[r.key]}]")
            seen[r.key] = i
            edits.append(r)
        exclude = req.exclude_seen if req.HasField("exclude_seen") else True
        return Prepared(np.zeros(0, np.int64), k, exclude, edits, allowed=self.rules.mask(req),
                        unsteered=bool(req.include_unsteered))

    def for_history(self, base: Prepared, ids, name: str = "history") -> Prepared:
        """``base`` (from :meth:`prepare_rules`) for one user's history (dataset item ids, oldest first)."""
        history, unknown, older = self._history(ids, name)
        earlier = np.setdiff1d(older, history) if base.exclude_seen else older[:0]
        return replace(base, history=history, unknown=unknown, truncated=len(older), earlier=earlier)

    # recommendations ---------------------------------------------------------------------
    def _scored(self, index: np.ndarray, scores) -> list:
        return [pb.ScoredItem(item_id=self._ids[i], score=float(s), title=self._titles[i], genres=self._genres[i])
                for i, s in zip(np.asarray(index, dtype=np.int64).tolist(), scores)]

    def _response(self, p: Prepared, top: tuple, fallback: bool = False, plain: tuple | None = None):
        """``top`` (and ``plain``, the unsteered list): (dense indices, scores) already cut to k."""
        return pb.RecommendResponse(
            items=self._scored(*top), model_version=self.version, unknown_item_ids=p.unknown,
            truncated_items=p.truncated, popularity_fallback=fallback, fewer_than_k=len(top[0]) < p.k,
            unsteered_items=self._scored(*plain) if p.unsteered and plain is not None else [],
            applied_steering=[] if fallback else [
                pb.ResolvedSteering(feature_id=e.index, label=e.label, value=e.value, mode=MODE_ENUM[e.mode],
                                    position=POSITION_ENUM[e.positions]) for e in p.edits])

    def _popular(self, p: Prepared) -> tuple:
        order = self.popular if p.allowed is None else self.popular[p.allowed[self.popular - 1]]
        top = order[:p.k]
        return top, self.counts[top - 1] if self.counts is not None else np.zeros(len(top))

    def _mask(self, preps: list[Prepared]) -> torch.Tensor | None:
        """(b, V) additive score mask of the rows' business rules (None when no row has rules)."""
        if all(p.allowed is None for p in preps):
            return None
        ok = np.stack([p.allowed if p.allowed is not None else self._everything for p in preps])
        return torch.where(torch.from_numpy(ok), 0.0, float("-inf"))

    @staticmethod
    def _cut(p: Prepared, idx: np.ndarray, vals: np.ndarray, k: int) -> tuple:
        """Drop -inf (seen, or masked by the rules: fewer eligible items than asked for) and items seen
        before the model's window, keep k."""
        keep = np.isfinite(vals) & ~np.isin(idx, p.earlier)
        return idx[keep][:k], vals[keep][:k]

    def _ranked(self, preps: list[Prepared], k: int, exclude: bool, steered: bool) -> list[tuple]:
        """One batched pass (cut by length) for requests sharing k and exclude_seen, each with its own
        edits (or none, ``steered=False``) and rules."""
        extra = max(len(p.earlier) for p in preps)     # items seen before the window are dropped: ask for more
        idx, vals = self.steerer.recommend([p.history for p in preps], [p.edits if steered else [] for p in preps],
                                           k=min(k + extra, self.n_items), exclude_seen=exclude, with_scores=True,
                                           max_tokens=BATCH_TOKENS,
                                           candidates=lambda rows: self._mask([preps[r] for r in rows]))
        return [self._cut(p, idx[r], vals[r], k) for r, p in enumerate(preps)]

    def _paired(self, preps: list[Prepared], k: int, exclude: bool) -> list[tuple]:
        """(steered, unsteered) lists of requests whose edits all act at the last position: one prefill
        per history, both last steps replayed (:meth:`Steerer.steered_and_plain_scores`)."""
        out: list = [None] * len(preps)
        extra = max(len(p.earlier) for p in preps)
        for rows in length_batches([len(p.history) for p in preps], 256, BATCH_TOKENS):
            part = [preps[r] for r in rows]
            scores = self.steerer.steered_and_plain_scores([p.history for p in part], [p.edits for p in part], exclude)
            mask = self._mask(part)
            if mask is not None:
                scores = scores + mask[:, None, :]
            top = scores.topk(min(k + extra, self.n_items), dim=2)
            idx, vals = (top.indices + 1).numpy(), top.values.numpy()
            for j, r in enumerate(rows):
                out[r] = (self._cut(preps[r], idx[j, 1], vals[j, 1], k), self._cut(preps[r], idx[j, 0], vals[j, 0], k))
        return out

    def ranked(self, preps: list[Prepared]) -> list[tuple]:
        """Batched forward passes for all requests with a known item; each keeps its own edits and
        rules. Per request ``(top, plain, fallback)``: (dense indices, scores) cut to k, the unsteered
        list (``top`` itself when there is none to tell apart), and whether it is the popularity fallback."""
        out: list = [None] * len(preps)
        for i, p in enumerate(preps):
            if not len(p.history):                     # nothing the model knows: popular items, unsteered
                top = self._popular(p)
                out[i] = (top, top, True)
        # group by (k, exclude_seen): one call each (in practice one group)
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, p in enumerate(preps):
            if len(p.history):
                groups.setdefault((min(p.k, self.n_items), p.exclude_seen), []).append(i)
        for (k, exclude), rows in groups.items():
            # include_unsteered with last-position edits: one prefill for both lists; other edits: two passes
            paired = [i for i in rows if preps[i].unsteered and preps[i].edits
                      and all(e.positions == "last" for e in preps[i].edits)]
            single = [i for i in rows if i not in set(paired)]
            if single:
                steered = self._ranked([preps[i] for i in single], k, exclude, True)
                twice = [j for j, i in enumerate(single) if preps[i].unsteered and preps[i].edits]
                plain = dict(zip(twice, self._ranked([preps[single[j]] for j in twice], k, exclude, False))) if twice else {}
                for j, i in enumerate(single):
                    out[i] = (steered[j], plain.get(j, steered[j]), False)
            if paired:
                for i, (top, plain) in zip(paired, self._paired([preps[i] for i in paired], k, exclude)):
                    out[i] = (top, plain, False)
        return out

    def recommend_batch(self, preps: list[Prepared]) -> list:
        """:meth:`ranked` as RecommendResponses."""
        return [self._response(p, top, fallback, plain) for p, (top, plain, fallback) in zip(preps, self.ranked(preps))]

    def recommend_many(self, reqs) -> list:
        """RecommendBatch: each request validated on its own (a bad one becomes its entry's error, the
        others are answered), the valid ones scored together by :meth:`recommend_batch`."""
        if not 1 <= len(reqs) <= MAX_BATCH:
            raise InvalidRequest("requests", f"{len(reqs)} requests; send 1..{MAX_BATCH} per call")
        preps, out = [], [None] * len(reqs)
        for i, r in enumerate(reqs):
            try:
                preps.append((i, self.prepare(r)))
            except InvalidRequest as e:
                out[i] = pb.RecommendBatchResult(error=pb.RequestError(field=e.field, message=str(e)))
        for (i, _), resp in zip(preps, self.recommend_batch([p for _, p in preps])):
            out[i] = pb.RecommendBatchResult(response=resp)
        return out

    def recommend_batch_call(self, req) -> pb.RecommendBatchResponse:
        """The RecommendBatch RPC: :meth:`recommend_many` with the model version."""
        return pb.RecommendBatchResponse(results=self.recommend_many(req.requests), model_version=self.version)

    def recommend(self, req):
        return self.recommend_batch([self.prepare(req)])[0]

    # catalog ---------------------------------------------------------------------------
    def _feature(self, j: int):
        f = self.catalog.features.loc[j]
        top_ids = [int(x) for x in f.get("top_items", [])]
        top_vals = [float(x) for x in f.get("top_values", [])]
        keep = [t for t, v in zip(top_ids, top_vals) if v > 0]
        top_dense, _ = self.items.to_index(keep)
        promo_dense, _ = self.items.to_index([int(x) for x in f.get("promoted_items", [])])
        return pb.Feature(
            feature_id=int(j), label=self.catalog.label(int(j)), label_correlation=float(f["label_correlation"]),
            label_auc=float(f.get("label_auc", np.nan)), firing_frequency=float(f["firing_frequency"]),
            max_activation=float(f["max_activation"]),
            top_items=self._scored(top_dense, [v for v in top_vals if v > 0][:len(top_dense)]),
            promoted_items=self._scored(promo_dense, list(f.get("promoted_logit_change", []))[:len(promo_dense)]),
            top_feature_of_label=int(j) in self.top_of_label)

    def get_feature(self, req):
        n = self.catalog.n_features
        if not 0 <= req.feature_id < n:
            raise InvalidRequest("feature_id", f"unknown feature {req.feature_id}; features are 0..{n - 1} "
                                 "(ListFeatures lists them)")
        return pb.GetFeatureResponse(feature=self._feature(req.feature_id))

    def list_features(self, req):
        size = req.page_size or 50
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidRequest("page_size", f"must be in 1..{MAX_PAGE_SIZE}, got {req.page_size}")
        try:
            start = int(req.page_token) if req.page_token else 0
        except ValueError:
            raise InvalidRequest("page_token", f"not a token from a previous response: {req.page_token!r}") from None
        t = self.catalog.features
        shown = self.catalog.shown_labels()          # an unlabelled feature is not listed under its attribute
        mask = np.ones(len(t), dtype=bool)
        if req.attribute:
            try:
                name = self.catalog.canonical(req.attribute)
            except SaerecError as e:
                raise InvalidRequest("attribute", str(e)) from None
            mask &= (shown == name).to_numpy()
        if req.label_contains:
            mask &= shown.str.lower().str.contains(req.label_contains.lower(), regex=False).to_numpy()
        if req.alive_only:
            mask &= (t["firing_frequency"] > 0).to_numpy()
        ids = t.index[mask].to_numpy()
        ids = ids[np.argsort(-t.loc[ids, "label_correlation"].to_numpy(), kind="stable")]
        if start < 0 or start > len(ids):
            raise InvalidRequest("page_token", f"out of range: {req.page_token!r}")
        page = ids[start:start + size]
        nxt = str(start + size) if start + size < len(ids) else ""
        return pb.ListFeaturesResponse(features=[self._feature(int(j)) for j in page], next_page_token=nxt,
                                       total=int(len(ids)))

    # explanations ------------------------------------------------------------------------
    def explain(self, req):
        k = req.k or 10
        if not 1 <= k <= 100:
            raise InvalidRequest("k", f"must be in 1..100, got {req.k}")
        nf = req.features or 8
        if not 1 <= nf <= 64:
            raise InvalidRequest("features", f"must be in 1..64, got {req.features}")
        history, unknown, _ = self._history(req.history)
        if not len(history):
            raise InvalidRequest("history", "no item the model knows: nothing to explain")
        ex = explain(self.steerer, history, k=min(k, self.steerer.model.n_items - len(set(history.tolist()))),
                     top_features=nf)
        items = []
        for r, row in ex.items.iterrows():
            c = ex.contributions[ex.contributions["rank"] == r + 1]
            items.append(pb.ExplainedItem(
                item=self._scored(np.array([row["index"]]), [row["score"]])[0],
                contributions=[pb.Contribution(feature_id=int(x.feature), contribution=float(x.contribution),
                                               total_effect=float(x.ablation_change)) for x in c.itertuples()],
                direct_total=float(ex.direct_total[r])))
        feats = [pb.FeatureActivation(feature_id=int(f.feature), label=str(f.label), activation=float(f.activation))
                 for f in ex.features.itertuples()]
        return pb.ExplainResponse(features=feats, items=items, model_version=self.version, unknown_item_ids=unknown)
