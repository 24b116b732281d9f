"""Business rules of a Recommend request: allow and deny lists, attribute filters.

Steering shifts scores; it cannot promise that a Horror film never reaches a child profile. Rules
do: they become one boolean candidate mask over the catalogue, added to the item scores as -inf
after steering and before the top-k, so no returned item can violate them (whatever the steering
did), and when fewer than k items stay eligible the response has fewer, flagged ``fewer_than_k``.

Semantics (documented in the proto and docs/serving.md): ``allow_items`` is the candidate set
(empty: every item); ``deny_items`` are never returned; every returned item carries every
``include_attributes`` entry and no ``exclude_attributes`` entry. Attributes are the boolean
columns of the run's ``items.parquet`` (genres, ``decade:1990s``, ``popularity:high``, an items
table's own columns), matched case-insensitively. Ids the model does not know are ignored: an
allow list from a stock system may name items the model was not trained on.
"""

from __future__ import annotations

import numpy as np

from ..errors import SaerecError
from ..steer.catalog import ItemTable

MAX_RULE_IDS = 100_000             # ids per allow or deny list (bounds the work of one request)
MAX_RULE_ATTRIBUTES = 64           # entries per attribute filter


class InvalidRequest(SaerecError):
    """A request the service rejects: gRPC INVALID_ARGUMENT, the message starting with the field
    (defined here, the lowest serving module, and used by :mod:`.service` for every field)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class Rules:
    """Builds a request's candidate mask from the run's item table (one per replica)."""

    def __init__(self, items: ItemTable):
        self.items = items
        self.n = len(items.items)
        self.matrix = items.items[items.attributes].to_numpy(dtype=bool)      # (V, A): column j = dense j + 1
        self.columns = {name.lower(): i for i, name in enumerate(items.attributes)}

    def _attribute(self, name: str, field_name: str) -> int:
        j = self.columns.get(name.strip().lower()) if name.strip() else None
        if j is None:
            names = sorted(self.items.attributes)
            shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
            what = "empty attribute name" if not name.strip() else f"unknown attribute {name!r}"
            raise InvalidRequest(field_name, f"{what}; known attributes (items.parquet): {shown}")
        return j

    def _ids(self, ids, field_name: str) -> np.ndarray:
        if len(ids) > MAX_RULE_IDS:
            raise InvalidRequest(field_name, f"{len(ids)} ids; at most {MAX_RULE_IDS} per request")
        dense, _ = self.items.to_index(np.fromiter(ids, dtype=np.int64, count=len(ids)))
        return dense - 1

    def mask(self, req) -> np.ndarray | None:
        """The (V,) eligible items of ``req`` (column j = dense index j + 1), or None without rules.
        Raises :class:`InvalidRequest` naming the field for a malformed rule."""
        for name in ("include_attributes", "exclude_attributes"):
            if len(getattr(req, name)) > MAX_RULE_ATTRIBUTES:
                raise InvalidRequest(name, f"{len(getattr(req, name))} attributes; at most {MAX_RULE_ATTRIBUTES} per request")
        include = [self._attribute(a, f"include_attributes[{i}]") for i, a in enumerate(req.include_attributes)]
        exclude = [self._attribute(a, f"exclude_attributes[{i}]") for i, a in enumerate(req.exclude_attributes)]
        allow = self._ids(req.allow_items, "allow_items") if len(req.allow_items) else None
        deny = self._ids(req.deny_items, "deny_items")
        if allow is None and not len(deny) and not include and not exclude:
            return None
        if allow is not None:
            ok = np.zeros(self.n, dtype=bool)
            ok[allow] = True
        else:
            ok = np.ones(self.n, dtype=bool)
        ok[deny] = False
        if include:
            ok &= self.matrix[:, include].all(axis=1)
        if exclude:
            ok &= ~self.matrix[:, exclude].any(axis=1)
        return ok
