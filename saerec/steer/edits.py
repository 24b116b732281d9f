"""Steering edits: what a user asks for, before and after resolution to a concrete direction.

An :class:`Edit` names a *target* (an SAE feature id, or an attribute name such as ``Sci-Fi``), a
value and a mode, applied to one *coordinate* of the hidden state:

- SAE feature j: the coordinate is the latent f_j = enc(norm(h))_j; moving it by Δ moves the hidden
  state along the decoder column, h += Δ · W_dec[j] · std.
- probe for attribute a: the coordinate is the centred projection c = <norm(h) - μ, u_a> on the
  probe's unit direction u_a; moving it by Δ moves h += Δ · u_a · std.

Both directions have unit norm in the normalised space (the paper's "normalised to unit variance"),
so a value means the same size of push for an SAE feature and for a probe.

Modes (the same affine form c' = a·c + b for all three): ``set`` c' = v (the paper), ``add``
c' = c + v, ``scale`` c' = v·c. Positions: ``last`` (the paper: the step that makes the
recommendation) or ``all`` (every step of the history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import SteeringError

MODES = ("set", "add", "scale")
POSITIONS = ("last", "all")
METHODS = ("sae", "probe")
MAX_ABS_VALUE = 100.0      # larger pushes only produce degenerate lists; the server enforces the same bound


EditError = SteeringError     # the name the steering modules use


@dataclass(frozen=True)
class Edit:
    target: int | str          # SAE feature id, or an attribute name resolved through the catalog/probes
    value: float
    mode: str = "set"
    positions: str = "last"
    method: str = "sae"        # "sae": an SAE feature; "probe": the attribute's linear-probe direction

    def __post_init__(self):
        if self.mode not in MODES:
            raise EditError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.positions not in POSITIONS:
            raise EditError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.method not in METHODS:
            raise EditError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        try:
            v = float(self.value)
        except (TypeError, ValueError):
            raise EditError(f"value must be a number, got {self.value!r}") from None
        if not math.isfinite(v) or abs(v) > MAX_ABS_VALUE:
            raise EditError(f"value must be finite with |value| <= {MAX_ABS_VALUE:g}, got {self.value!r}")
        object.__setattr__(self, "value", v)
        if isinstance(self.target, bool) or not isinstance(self.target, (int, str)):
            raise EditError(f"target must be a feature id or an attribute name, got {self.target!r}")
        if isinstance(self.target, int) and self.target < 0:
            raise EditError(f"feature id must be >= 0, got {self.target}")
        if isinstance(self.target, str) and not self.target.strip():
            raise EditError("attribute name is empty")
        if self.method == "probe" and not isinstance(self.target, str):
            raise EditError("a probe edit targets an attribute name, not a feature id")


@dataclass(frozen=True)
class ResolvedEdit:
    """An edit bound to one direction: ``kind`` "sae" (index = feature id) or "probe" (index = probe row)."""

    kind: str
    index: int
    value: float
    mode: str
    positions: str
    label: str                 # what the direction stands for (the feature's catalog label or the attribute)

    @property
    def key(self) -> tuple[str, int]:
        return self.kind, self.index


def parse_edit(text: str) -> Edit:
    """Parse ``[probe:]TARGET=[MODE:]VALUE[@POSITIONS]``.

    TARGET is a feature id (digits) or an attribute name; examples: ``Sci-Fi=2`` (set the Sci-Fi
    feature to 2 at the last step), ``Drama=add:-3``, ``1572=scale:0@all``, ``probe:Western=add:4``.
    """
    s = text.strip()
    method = "sae"
    if s.startswith("probe:"):
        method, s = "probe", s[len("probe:"):]
    if "=" not in s:
        raise EditError(f"edit {text!r}: expected TARGET=[MODE:]VALUE[@last|@all]")
    target, spec = s.rsplit("=", 1)
    positions = "last"
    if "@" in spec:
        spec, positions = spec.split("@", 1)
    mode = "set"
    if ":" in spec:
        mode, spec = spec.split(":", 1)
    try:
        value = float(spec)
    except ValueError:
        raise EditError(f"edit {text!r}: value {spec!r} is not a number") from None
    target = target.strip()
    tgt: int | str = int(target) if target.isdigit() else target
    try:
        return Edit(tgt, value, mode.strip(), positions.strip(), method)
    except EditError as e:
        raise EditError(f"edit {text!r}: {e}") from None
