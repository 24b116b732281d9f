"""Every worked example in a docstring (``>>>``) runs: formulas and helpers carry their own checks."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "saerec").rglob("*.py")
                 if ">>>" in p.read_text())


def test_modules_with_examples_are_found():
    assert "saerec.train.objective" in MODULES and "saerec.checks" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name), raise_on_error=False, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0, f"{name}: {res.failed} of {res.attempted} examples failed"
