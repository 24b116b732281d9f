"""What steering and explanations look up: the item table and the SAE feature catalog of a run.

``ItemTable`` maps the dataset's item ids to the model's dense indices and back, with titles and
attribute columns for display (``RUN/recommender/items.parquet``). ``FeatureCatalog`` resolves an
attribute name to its top SAE feature and labels features (``RUN/interpret/attributes.parquet`` and
``catalog.parquet``, written by ``saerec interpret``). When ``saerec sae-eval`` has run, each
feature also carries its label confidence (``RUN/saeeval/features.parquet``: the held-out F1 of "fires
on items with its label"), and a feature below the run's threshold is shown as ``unlabelled``
instead of under a name its firing does not follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.attributes import attribute_columns, genre_columns
from ..errors import RunError
from ..rundir import A, RunDir
from .edits import EditError

UNLABELLED = "unlabelled"


@dataclass
class ItemTable:
    items: pd.DataFrame          # one row per model item, ordered by dense index (row i = index i + 1)
    attributes: list[str]        # boolean attribute columns
    genres: list[str]

    def __post_init__(self):
        self._ids = self.items["item_id"].to_numpy(dtype=np.int64)   # sorted: the dense index order

    @classmethod
    def load(cls, run: RunDir, n_items: int) -> "ItemTable":
        df = run.read_parquet(A.CATALOGUE)
        df = df[df["index"].between(1, n_items)].sort_values("index").reset_index(drop=True)
        if len(df) != n_items or not (df["index"].to_numpy() == np.arange(1, n_items + 1)).all():
            raise RunError(f"{run.recommender / 'items.parquet'} does not cover the model's {n_items} items")
        return cls(df, attribute_columns(df), genre_columns(df))

    @property
    def item_ids(self) -> np.ndarray:
        return self._ids

    def to_index(self, item_ids) -> tuple[np.ndarray, list[int]]:
        """Dataset item ids (oldest first) -> dense indices, and the ids the model does not know."""
        ids = np.asarray(item_ids, dtype=np.int64)
        known = self.item_ids
        pos = np.searchsorted(known, ids).clip(0, len(known) - 1)
        ok = known[pos] == ids
        return (pos[ok] + 1).astype(np.int64), ids[~ok].tolist()

    def attribute_matrix(self, columns: list[str]) -> np.ndarray:
        """(V + 1, A) boolean: row j = dense index j (row 0, padding, is all False)."""
        m = self.items[columns].to_numpy(dtype=bool)
        return np.vstack([np.zeros((1, len(columns)), dtype=bool), m])

    def describe(self, index: np.ndarray) -> pd.DataFrame:
        """Item id, title and genres of dense indices, in the given order."""
        rows = self.items.iloc[np.asarray(index, dtype=np.int64) - 1]
        return rows[["item_id", "title", "genres"]].reset_index(drop=True)


@dataclass
class FeatureCatalog:
    attributes: pd.DataFrame     # attribute -> top SAE feature (sae_feature, sae_correlation, ...)
    features: pd.DataFrame       # feature -> label, label_correlation, firing_frequency, max_activation, ...
    n_features: int              # (+ label_confidence, labelled after sae-eval)

    def __post_init__(self):
        # plain dicts for the per-request lookups (a served request resolves names without pandas)
        names = self.attributes["attribute"].astype(str).tolist()
        self._exact = {n: n for n in names}
        self._folded = {n.lower(): n for n in names}
        self._top = dict(zip(names, self.attributes["sae_feature"].astype(int).tolist()))
        if "labelled" not in self.features:
            self.features["label_confidence"] = np.nan
            self.features["labelled"] = True
        shown = self.features["label"].astype(str).where(self.features["labelled"].astype(bool), UNLABELLED)
        self._labels = dict(zip(self.features.index.astype(int).tolist(), shown.tolist()))

    @classmethod
    def load(cls, run: RunDir) -> "FeatureCatalog":
        if not run.has(A.ATTRIBUTES):
            raise RunError(f"{run.root / 'interpret'}: no feature catalog; run `saerec interpret --run {run.root}` first")
        attrs = run.read_parquet(A.ATTRIBUTES)
        feats = run.read_parquet(A.FEATURES).set_index("feature").sort_index()
        if run.has(A.EVAL_FEATURES):
            conf = run.read_parquet(A.EVAL_FEATURES).set_index("feature")
            if len(conf) == len(feats):
                feats = feats.join(conf[["label_confidence", "labelled"]])
        return cls(attrs, feats, len(feats))

    def attribute_names(self) -> list[str]:
        return self.attributes["attribute"].tolist()

    def canonical(self, name: str) -> str:
        """The catalog's spelling of an attribute (case-insensitive), or a clear error listing valid ones."""
        hit = self._exact.get(name) or self._folded.get(name.strip().lower())
        if hit is None:
            names = self.attribute_names()
            shown = ", ".join(sorted(names)[:40]) + (" ..." if len(names) > 40 else "")
            raise EditError(f"unknown attribute {name!r}; known attributes: {shown} "
                            "(all of them: `saerec features --run RUN` or RUN/interpret/attributes.parquet)")
        return hit

    def feature_for(self, attribute: str) -> int:
        """The attribute's top SAE feature: the one with the highest correlation (paper Section 7)."""
        return self._top[self.canonical(attribute)]

    def check_feature(self, j: int) -> None:
        if not 0 <= j < self.n_features:
            raise EditError(f"unknown feature id {j}; the SAE has features 0..{self.n_features - 1}")

    def label(self, j: int) -> str:
        """The feature's label as shown: its attribute, or ``unlabelled`` when its label confidence is
        below the sae-eval threshold."""
        return self._labels.get(j, f"#{j}")

    def shown_labels(self) -> pd.Series:
        """Every feature's label as shown (``label``), indexed by feature id."""
        return pd.Series(self._labels).reindex(self.features.index)

    def confidence(self, j: int) -> float:
        """Held-out F1 of "fires on items with its label" (NaN before ``saerec sae-eval``)."""
        return float(self.features.at[j, "label_confidence"]) if j in self.features.index else float("nan")

    def table(self) -> pd.DataFrame:
        """Features as a display table (alive first, by label correlation)."""
        f = self.features.reset_index()
        f["label"] = self.shown_labels().to_numpy()
        cols = [c for c in ("feature", "label", "label_correlation", "label_confidence", "label_auc",
                            "firing_frequency", "max_activation") if c in f]
        return f[cols].sort_values(["label_correlation"], ascending=False).reset_index(drop=True)
