"""``model.arch`` -> a recommender: the built-in architectures, or a user's factory.

A factory is ``package.module:function``; it is called as ``function(n_items=V, **model.factory_kwargs)``
and must return a :class:`~.interface.SequentialRecommender` (a subclass of the user's own, or a
:class:`~.adapter.HookedRecommender` around any ``nn.Module``). Every failure is one line naming
what is wrong and what is valid (UsageError: exit code 2).
"""

from __future__ import annotations

import importlib

from ..config import BUILTIN_ARCHS, ModelConfig
from ..errors import UsageError
from .interface import SequentialRecommender

# what each model trains on: the next item at every position, or the masked items (Cloze)
OBJECTIVES = {"gptrec": "causal", "sasrec": "causal", "bert4rec": "cloze"}


def builtin(arch: str):
    from .bert4rec import BERT4Rec
    from .gptrec import GPTRec
    from .sasrec import SASRec

    return {"gptrec": GPTRec, "sasrec": SASRec, "bert4rec": BERT4Rec}[arch]


def load_factory(spec: str, path: str | None = None):
    import sys

    if path and path not in sys.path:
        sys.path.insert(0, path)
    mod, _, fn = spec.partition(":")
    try:
        module = importlib.import_module(mod)
    except Exception as e:                         # ImportError, or the module raising while imported
        raise UsageError(f"model.arch {spec!r}: cannot import {mod!r} ({type(e).__name__}: {e})") from None
    factory = getattr(module, fn, None)
    if not callable(factory):
        raise UsageError(f"model.arch {spec!r}: {mod!r} has no callable {fn!r}")
    return factory


def build_model(cfg: ModelConfig, n_items: int) -> SequentialRecommender:
    if cfg.arch in BUILTIN_ARCHS:
        return builtin(cfg.arch)(cfg, n_items)
    factory = load_factory(cfg.arch, cfg.factory_path)
    try:
        model = factory(n_items=n_items, **cfg.factory_kwargs)
    except TypeError as e:
        raise UsageError(f"model.arch {cfg.arch!r}: the factory rejected n_items={n_items} and "
                         f"model.factory_kwargs {cfg.factory_kwargs} ({e})") from None
    if not isinstance(model, SequentialRecommender):
        raise UsageError(f"model.arch {cfg.arch!r} returned a {type(model).__name__}, not a SequentialRecommender "
                         "(wrap an nn.Module in saerec.model.adapter.HookedRecommender)")
    return model


def objective(cfg: ModelConfig, model: SequentialRecommender) -> str:
    """``causal`` or ``cloze``; a factory's model says so in its ``objective`` attribute (default causal)."""
    return OBJECTIVES.get(cfg.arch) or getattr(model, "objective", "causal")
