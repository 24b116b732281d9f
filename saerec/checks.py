"""Value checks for config fields, written in the field's type: ``epochs: Positive = 200``.

A bad number would otherwise fail deep inside a Ray worker as a traceback (``range(0)`` batches,
a ZeroDivisionError, torch rejecting a dropout of 1.5) or, worse, run and mean something else
(``patience: 0`` stops after the first epoch). ``saerec.config`` runs the checks when a value is set
and when a section is built; each raises ``ValueError(reason)``, which becomes one line naming the key.

>>> from typing import get_args
>>> check = get_args(Positive)[1]
>>> check(3)
>>> check(0)
Traceback (most recent call last):
ValueError: 0 must be >= 1
"""

from __future__ import annotations

from typing import Annotated


def at_least(lo: float):
    def check(v) -> None:
        if v < lo:
            raise ValueError(f"{v!r} must be >= {lo}")
    return check


def greater_than(lo: float):
    def check(v) -> None:
        if not v > lo:
            raise ValueError(f"{v!r} must be > {lo}")
    return check


def _probability(p: float) -> None:
    """Dropout and mask rates: [0, 1)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{p!r} is not in [0, 1)")


def _fraction(p: float) -> None:
    """Shares of users: strictly between 0 and 1 (both parts must exist)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"{p!r} is not in (0, 1)")


def _unit_interval(p: float) -> None:
    """Scores such as a label-confidence threshold: [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{p!r} is not in [0, 1]")


Positive = Annotated[int, at_least(1)]
NonNegative = Annotated[int, at_least(0)]
Failures = Annotated[int, at_least(-1)]          # Ray's max_failures: -1 retries forever
PositiveFloat = Annotated[float, greater_than(0.0)]
NonNegativeFloat = Annotated[float, at_least(0.0)]
Probability = Annotated[float, _probability]
Fraction = Annotated[float, _fraction]
UnitInterval = Annotated[float, _unit_interval]
