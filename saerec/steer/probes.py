"""Linear probes: the supervised baseline the paper compares SAE steering with (Section 8.2.3).

One logistic regression per attribute, trained on the same inputs as the SAE (normalised block
activations of the SAE-part users) with the attribute of the item at that position as the label.
Its weight vector, scaled to unit norm in the normalised space, is a steering direction that goes
through the same edit API as an SAE feature (``method="probe"``).

Rows are sampled while streaming the shards (each row kept with probability max_rows / total), so
memory stays bounded. Saved as ``RUN/steer/probes.safetensors`` + ``probes.json`` (no pickle).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from ..atomic import save_tensors, write_text

from ..activations.store import count_rows, iter_batches, to_tensor
from ..sae.normalize import Normalizer

log = logging.getLogger("saerec.steer")


@dataclass
class ProbeSet:
    attributes: list[str]
    directions: torch.Tensor          # (A, d) unit rows, in the normalised space
    center: torch.Tensor              # (d,) mean normalised activation: the origin of probe coordinates
    metrics: dict = field(default_factory=dict)   # per attribute: train rows, positives, held-out AUC

    def index(self, attribute: str) -> int:
        folded = {a.lower(): i for i, a in enumerate(self.attributes)}
        i = folded.get(attribute.strip().lower())
        if i is None:
            from .edits import EditError
            raise EditError(f"no probe for attribute {attribute!r}; probes exist for: {', '.join(self.attributes)}")
        return i

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "probes.safetensors",
                     {"directions": self.directions.contiguous(), "center": self.center.contiguous()})
        write_text(folder / "probes.json", json.dumps({"attributes": self.attributes, "metrics": self.metrics}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "ProbeSet":
        t = load_file(str(folder / "probes.safetensors"))
        meta = json.loads((folder / "probes.json").read_text())
        return cls(meta["attributes"], t["directions"], t["center"], meta.get("metrics", {}))


def sample_rows(folder: Path, item_attrs: pd.DataFrame, attributes: list[str], normalizer: Normalizer,
                max_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X normalised (n, d) float32, Y (n, A) bool) for a random subset of at most ~max_rows positions."""
    total = count_rows(folder)
    p = min(1.0, max_rows / max(total, 1))
    rng = np.random.default_rng(seed)
    lookup = pd.Series(np.arange(len(item_attrs)), index=item_attrs["item_id"].to_numpy())
    Yall = item_attrs[attributes].to_numpy(dtype=bool)
    xs, ys = [], []
    for rb in iter_batches(folder, ("item_id", "activation"), 65_536):
        keep = rng.random(rb.num_rows) < p
        if not keep.any():
            continue
        h = to_tensor(rb.column("activation"))[torch.from_numpy(keep)]
        xs.append(normalizer(h).numpy())
        ys.append(Yall[lookup[rb.column("item_id").to_numpy()[keep]].to_numpy()])
    if not xs:
        raise ValueError(f"{folder}: no activations to train probes on")
    return np.concatenate(xs), np.concatenate(ys)


def train_probes(train_folder: Path, test_folder: Path | None, item_attrs: pd.DataFrame, attributes: list[str],
                 normalizer: Normalizer, max_rows: int = 100_000, C: float = 1.0, seed: int = 0) -> ProbeSet:
    """Fit one L2-regularised logistic regression per attribute; AUC on held-out (test-user) rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    X, Y = sample_rows(train_folder, item_attrs, attributes, normalizer, max_rows, seed)
    Xt, Yt = (sample_rows(test_folder, item_attrs, attributes, normalizer, max_rows // 2, seed + 1)
              if test_folder is not None else (None, None))
    center = X.mean(0)
    dirs, metrics = [], {}
    for a, name in enumerate(attributes):
        y = Y[:, a]
        m = {"train_rows": int(len(y)), "positives": int(y.sum())}
        if 0 < y.sum() < len(y):
            clf = LogisticRegression(C=C, max_iter=500).fit(X - center, y)
            w = clf.coef_[0].astype(np.float32)
            if Xt is not None and 0 < Yt[:, a].sum() < len(Yt):
                score = (Xt - center) @ w
                m["test_auc"] = float(roc_auc_score(Yt[:, a], score))
                m["test_correlation"] = float(np.corrcoef(score, Yt[:, a])[0, 1])
        else:                                   # a constant label has no direction
            w = np.zeros(X.shape[1], dtype=np.float32)
        norm = float(np.linalg.norm(w))
        dirs.append(w / norm if norm > 0 else w)
        metrics[name] = m
    log.info("trained %d probes on %d rows", len(attributes), len(X))
    return ProbeSet(list(attributes), torch.from_numpy(np.stack(dirs)), torch.from_numpy(center.astype(np.float32)),
                    metrics)
