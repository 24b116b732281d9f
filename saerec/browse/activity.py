"""One pass over the test users' activations for the feature pages: what the catalog does not keep.

- the activation histogram of every feature, split by whether the item at the position has the
  feature's label attribute (paper Figure 5, for every feature instead of one per genre);
- the feature's activation at the items *before* each of its top-activating positions, so a page
  can show that user's history shaded by the feature (paper Figure 6).

Both need the SAE codes of every test position, which no stage stores (they are recomputed from
``RUN/activations/test`` with the run's SAE, in batches: memory stays flat).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..activations.store import count_rows, iter_batches, to_tensor
from ..progress import Progress


@dataclass
class Activity:
    edges_max: np.ndarray        # (m,) upper edge of each feature's histogram (its max activation)
    active: np.ndarray           # (m, 2, bins) positions with the feature active, by [absent, present] and bin
    inactive: np.ndarray         # (m, 2) positions with the feature at 0, by [absent, present]
    windows: pd.DataFrame        # feature, slot, offset, item_id, value: the shaded histories


def _window_requests(catalog: pd.DataFrame, window: int) -> pd.DataFrame:
    """(user_id, position) -> (feature, slot, offset) for the ``window`` positions ending at every
    top-activating position of every feature (offset 0 = the top position itself)."""
    rows = []
    for j, users, positions, values in zip(catalog.index, catalog["top_users"], catalog["top_positions"],
                                           catalog["top_values"]):
        for slot, (u, p, v) in enumerate(zip(users, positions, values)):
            if v <= 0:
                continue
            for off in range(min(window, int(p) + 1)):
                rows.append((int(u), int(p) - off, int(j), slot, off))
    return pd.DataFrame(rows, columns=["user_id", "position", "feature", "slot", "offset"])


@torch.no_grad()
def measure_activity(folder, sae, catalog: pd.DataFrame, label_matrix: np.ndarray, item_row: pd.Series,
                     bins: int = 24, window: int = 12, batch_rows: int = 8192, progress: bool = True) -> Activity:
    """``label_matrix``: (items, m) bool, whether item row r has feature j's label attribute;
    ``item_row``: dataset item id -> row of ``label_matrix``."""
    m = len(catalog)
    hi = torch.from_numpy(catalog["max_activation"].to_numpy(dtype=np.float32).copy()).clamp_min(1e-9)
    counts = torch.zeros(m * 2 * bins, dtype=torch.float64)
    totals = torch.zeros(m, 2, dtype=torch.float64)
    L = torch.from_numpy(label_matrix)
    req = _window_requests(catalog, window)
    found = []
    bar = Progress("feature pages: test activations", count_rows(folder), "positions", enabled=progress)
    for rb in iter_batches(folder, ("user_id", "position", "item_id", "activation"), batch_rows):
        f = sae.encode(sae.normalizer(to_tensor(rb.column("activation"))))              # (B, m)
        item_ids = rb.column("item_id").to_numpy()
        present = L[torch.from_numpy(item_row.loc[item_ids].to_numpy().astype(np.int64))]   # (B, m) bool
        totals[:, 1] += present.sum(0)
        totals[:, 0] += (~present).sum(0)
        r, c = torch.nonzero(f > 0, as_tuple=True)
        b = (f[r, c] / hi[c] * bins).long().clamp(0, bins - 1)
        counts += torch.bincount(c * 2 * bins + present[r, c].long() * bins + b, minlength=m * 2 * bins).double()
        batch = pd.DataFrame({"user_id": rb.column("user_id").to_numpy().astype(np.int64),
                              "position": rb.column("position").to_numpy().astype(np.int64),
                              "row": np.arange(rb.num_rows), "item_id": item_ids})
        hit = req.merge(batch, on=["user_id", "position"])
        if len(hit):
            hit["value"] = f[torch.tensor(hit["row"].to_numpy(dtype=np.int64)), torch.tensor(hit["feature"].to_numpy(dtype=np.int64))].numpy()
            found.append(hit[["feature", "slot", "offset", "item_id", "value"]])
        bar.update(rb.num_rows)
    active = counts.view(m, 2, bins).numpy()
    inactive = totals.numpy() - active.sum(2)
    windows = pd.concat(found) if found else pd.DataFrame(columns=["feature", "slot", "offset", "item_id", "value"])
    windows = windows.sort_values(["feature", "slot", "offset"]).drop_duplicates(["feature", "slot", "offset"])
    return Activity(hi.numpy(), active, inactive, windows)
