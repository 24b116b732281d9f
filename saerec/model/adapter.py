"""Bring your own model: any PyTorch recommender as a :class:`~.interface.SequentialRecommender`.

:class:`HookedRecommender` wraps an ``nn.Module`` without changing its code. Its hidden states are
reached by module path through forward hooks (``states={"block.0": "encoder.layer.0", "final":
"encoder.layer.1"}``): the hook captures a module's output and, for an intervention, returns the
edited output, so the rest of the model runs on it. A module whose output is a tuple (HF-style) is
read and edited at its first element. You supply one function, ``run(net, items, lengths)``,
that calls the model on saerec's batch (right-padded dense indices 1..V, 0 = padding; convert to
your model's own padding or ids there); its return value is ignored, the ``final`` state comes from
its hook, at every position, (B, T, d). Scores are dot products with ``item_weights`` (a module
path to an embedding or linear layer, and which of its rows are items 1..V) or your own ``scores``.

:class:`ReindexedRecommender` puts a model whose catalogue is in its own order (an imported model,
``saerec import-model``) into the dataset's dense index space: item ids are translated on the way
in, score columns gathered on the way out. See docs/models.md for a worked example.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from .interface import Intervention, ModelOutput, SequentialRecommender, Visitor, check_states

Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor], object]


def _submodule(module: nn.Module, path: str, what: str) -> nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n][:12]
        raise KeyError(f"{what}: no module {path!r} in {type(module).__name__}; modules include {names}") from None


class HookedRecommender(SequentialRecommender):
    """An ``nn.Module`` with named states at module paths (see the module docstring).

    ``states``: state name -> module path; must include ``"final"`` (what the head scores).
    ``item_weights``: a module path whose ``weight`` rows ``item_rows`` (a slice, default 1..V: row 0
    is padding) are the item vectors; or pass ``scores(module, hidden) -> (..., V)`` instead.
    ``objective``: ``causal`` (the next item at every position) or ``cloze`` (with ``mask_token``,
    appended after a history to query it), for training with saerec.
    """

    def __init__(self, module: nn.Module, n_items: int, max_len: int, states: Mapping[str, str], run: Runner,
                 item_weights: str | None = None, item_rows: slice | None = None,
                 scores: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                 objective: str = "causal", mask_token: int | None = None):
        super().__init__()
        if "final" not in states:
            raise KeyError(f"states must name the 'final' module (what the head scores); got {sorted(states)}")
        if (item_weights is None) == (scores is None):
            raise ValueError("give exactly one of item_weights (a module path) or scores (a function)")
        self.net, self.n_items, self._max_len = module, n_items, max_len
        self._paths = dict(states)
        self._run, self._score_fn = run, scores
        # not registered as a child: the weights are the module's own, under the module's own keys
        object.__setattr__(self, "_weights_module", _submodule(module, item_weights, "item_weights")
                           if item_weights else None)
        self._rows = item_rows or slice(1, n_items + 1)
        self.objective, self.mask_token = objective, mask_token
        self._visit: Visitor | None = None
        for name, path in self._paths.items():
            _submodule(module, path, f"state {name!r}").register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(mod, args, output):
            if self._visit is None:                 # the module called outside saerec: leave it alone
                return None
            h = output[0] if isinstance(output, tuple) else output
            new = self._visit(name, h)
            if new is h and name != "final":
                return None
            if name == "final":
                self._final = new
            return (new, *output[1:]) if isinstance(output, tuple) else new
        return hook

    @property
    def state_names(self) -> list[str]:
        return list(self._paths)

    def state_dict(self, *args, **kwargs):
        """The wrapped module's own state dict (its keys, without a prefix): what users export."""
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def max_len(self) -> int:
        return self._max_len - (1 if self.mask_token is not None else 0)

    def forward(self, items: torch.Tensor, lengths: torch.Tensor | None = None, capture: Sequence[str] = (),
                interventions: Mapping[str, Intervention] | None = None) -> ModelOutput:
        check_states([*capture, *(interventions or {})], self.state_names)
        if lengths is None:
            lengths = (items != 0).sum(1)
        self._visit, self._final = Visitor(lengths, capture, interventions), None
        try:
            self._run(self.net, items, lengths)
            if self._final is None:
                raise RuntimeError(f"the 'final' module {self._paths['final']!r} did not run in run()")
            return ModelOutput(self._final, self._visit.captured)
        finally:
            self._visit, self._final = None, None

    def query_inputs(self, items, lengths):
        if self.mask_token is None:
            return items, lengths
        from .interface import append_token

        return append_token(items, lengths, self.mask_token, self._max_len)

    def item_weights(self) -> torch.Tensor:
        if self._weights_module is None:
            raise NotImplementedError("this model scores with its own function")
        return self._weights_module.weight[self._rows]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._score_fn is not None:
            return self._score_fn(self.net, hidden)
        return hidden @ self.item_weights().T


class ReindexedRecommender(SequentialRecommender):
    """``inner`` (items 1..V' in its own order) seen through the dataset's dense indices 1..V.

    ``to_inner``: (V + 1,) long, dataset dense index -> the inner model's index (0 -> 0). Every
    dataset item must be in the inner catalogue; inner items the dataset lacks are never scored.
    Interventions, captures and the last-step replay pass through unchanged (the states are the
    inner model's)."""

    def __init__(self, inner: SequentialRecommender, to_inner: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("to_inner", to_inner.long(), persistent=False)
        self.n_items = len(to_inner) - 1
        self.objective = getattr(inner, "objective", "causal")

    @property
    def state_names(self) -> list[str]:
        return self.inner.state_names

    @property
    def max_len(self) -> int:
        return self.inner.max_len

    def forward(self, items, lengths=None, capture=(), interventions=None) -> ModelOutput:
        return self.inner(self.to_inner[items], lengths, capture, interventions)

    def query(self, items, lengths, capture=(), interventions=None) -> ModelOutput:
        return self.inner.query(self.to_inner[items], lengths, capture, interventions)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.inner.scores(hidden)[..., self.to_inner[1:] - 1]

    def item_weights(self) -> torch.Tensor:
        return self.inner.item_weights()[self.to_inner[1:] - 1]

    def prefill_last(self, items, lengths, name):
        return self.inner.prefill_last(self.to_inner[items], lengths, name)

    def replay_last(self, cache, state):
        return self.inner.replay_last(cache, state)
