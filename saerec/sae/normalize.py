"""Activation normalisation kept with the SAE and applied identically at inference.

``global`` (default, what the paper's authors did): one scalar mean and one scalar std over all
elements of the training activations. ``per_dim``: a mean and std per hidden dimension.
Statistics are accumulated in float64 over a stream (Welford-free sums are fine at this scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalizer:
    mode: str
    mean: torch.Tensor      # scalar or (d,)
    std: torch.Tensor       # scalar or (d,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z) + self.mean.to(z)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(d["mode"], torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["std"], dtype=torch.float32))

    @classmethod
    def identity(cls) -> "Normalizer":
        return cls("none", torch.tensor(0.0), torch.tensor(1.0))


class NormStats:
    """Streamed sums for a Normalizer: update with batches, then ``finish``."""

    def __init__(self, mode: str = "global"):
        if mode not in ("global", "per_dim", "none"):
            raise ValueError(f"normalization must be global, per_dim or none, got {mode!r}")
        self.mode, self.n, self.s, self.ss = mode, 0, None, None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        if self.mode == "global":
            x = x.reshape(-1, 1)
        s, ss = x.sum(0), (x * x).sum(0)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += x.shape[0]

    def finish(self) -> Normalizer:
        if self.mode == "none":
            return Normalizer.identity()
        mean = self.s / self.n
        var = (self.ss / self.n - mean * mean).clamp_min(1e-12)
        mean, std = mean.float(), var.sqrt().float()
        if self.mode == "global":
            mean, std = mean.reshape(()), std.reshape(())
        return Normalizer(self.mode, mean, std)
