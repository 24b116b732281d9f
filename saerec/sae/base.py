"""The shared SAE interface and the tricks every kind uses.

f = act(W_enc (x - b_dec) + b_enc),  x_hat = f W_dec + b_dec   (x already normalised)

- Decoder rows (one per latent) are kept at unit norm: re-projected after every step, and the
  gradient component parallel to each row is removed before the step (so Adam does not fight the
  projection). With unit rows, a latent's activation is its contribution's length.
- W_enc starts as W_dec^T; b_dec starts at the data mean (or geometric median).
- Dead latents: a counter of activations since each latent last fired; ``dead_window`` without
  firing = dead. TopK kinds add the AuxK loss (reconstruct the detached residual from the top
  ``k_aux`` dead latents).
- Weights stay fp32.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn as nn
from safetensors.torch import load_file

from ..checks import NonNegativeFloat, Positive, PositiveFloat
from ..atomic import save_tensors, write_text

from .normalize import Normalizer

SAEKind = Literal["relu", "topk", "batchtopk", "jumprelu", "matryoshka"]
KINDS = typing.get_args(SAEKind)


def _prefix_fractions(fr: list[float]) -> None:
    """Matryoshka prefixes: strictly increasing fractions of the dictionary in (0, 1], the last 1."""
    if not fr or any(not 0.0 < f <= 1.0 for f in fr) or any(b <= a for a, b in zip(fr, fr[1:])) or fr[-1] != 1.0:
        raise ValueError(f"{fr!r} must be strictly increasing fractions in (0, 1] ending at 1.0")


@dataclass
class SAEConfig:
    """The ``sae`` config section; choices are checked when it is built (saerec.config.check_choices)."""

    # TopK (k=32), not the paper's ReLU-L1: the one kind that keeps L0 <= 150 with >= 1.5x the raw
    # neurons' genre correlation on ML-1M and on ML-100K (ReLU-L1 0.1: L0 288 on ML-1M), with steering
    # as monotone and as cheap. It costs absorption and labelled features; `kind: relu` is the paper's
    # SAE (docs/sae-eval.md, "The default SAE: the decision table")
    kind: SAEKind = "topk"
    n_latents: Positive = 2048
    l1: NonNegativeFloat = 0.1                 # relu: L1 weight (paper: 0.1)
    recon: Literal["squared", "l2"] = "squared"     # "squared": ||x - x_hat||^2 (paper); "l2": ||x - x_hat|| (authors' library)
    k: Positive = 32                     # topk / batchtopk: active latents per activation (mean, for batchtopk)
    # topk kinds: weight of the AuxK loss (Matryoshka: times its number of prefixes). 4, not the
    # paper's 1/32: at 1/32 BatchTopK left 74% of 2048 latents dead on ML-1M; Matryoshka needs an
    # effective 12 (3 prefixes x 4) to stay under 10% there (docs/sae-eval.md, dead latents)
    auxk_alpha: NonNegativeFloat = 4.0
    k_aux: Positive | None = None        # default: d_in // 2
    # matryoshka: nested dictionary prefixes as fractions of n_latents (2048 -> 32, 128, 512, 2048). Four,
    # not three: only with the 32-latent prefix is absorption below BatchTopK's on ML-1M (two seeds,
    # docs/sae-eval.md), which is what the kind is for; it costs some EV (0.971) and correlation (1.7-1.8x)
    matryoshka_prefixes: Annotated[list[float], _prefix_fractions] = field(
        default_factory=lambda: [0.015625, 0.0625, 0.25, 1.0])
    # activations without firing before a latent counts as dead (and AuxK trains it). Sized to the
    # data, not the papers' 10M tokens: 200,000 was more than an epoch of ML-1M (150,775), so a latent
    # firing once an epoch got no AuxK and still never fired on the 44k test positions (37% dead)
    dead_window: Positive = 20_000
    jump_bandwidth: PositiveFloat = 0.001   # jumprelu: straight-through rectangle width
    jump_init_threshold: NonNegativeFloat = 0.001
    l0: NonNegativeFloat = 0.01                # jumprelu: L0 penalty weight
    b_dec_init: Literal["mean", "geometric_median"] = "mean"
    normalization: Literal["global", "per_dim", "none"] = "global"      # "global": the paper
    lr: PositiveFloat = 1e-3
    batch_size: Positive = 256
    steps: Positive = 5_800              # the budget: optimiser steps of batch_size, rounded up to whole epochs
    epochs: Positive | None = None       # set: exactly this many epochs instead of the step budget
    shuffle_buffer: Positive = 65_536
    seed: int = 0

    def __post_init__(self):
        from ..config import check_choices       # saerec.config imports this module

        check_choices(self)


def planned_epochs(cfg: SAEConfig, rows: int) -> int:
    """Whole passes over ``rows`` activations: ``cfg.epochs`` when set, else enough for ``cfg.steps``
    steps of ``cfg.batch_size`` rows (at least one epoch).

    Why steps: a fixed epoch count gives a dataset ten times smaller ten times fewer steps, and its
    SAE stays nearly dense (docs/sae-eval.md). The default keeps ML-1M users 1-2999 at the 10 epochs
    it always had (5,890 steps; the authors trained 5k steps on ML-1M), like dictionary_learning's
    step budget and SAELens' token budget.

    >>> planned_epochs(SAEConfig(), 150_775)       # ML-1M users 1-2999: 589 steps an epoch
    10
    >>> planned_epochs(SAEConfig(), 15_000)        # ten times smaller: about the same steps
    99
    >>> planned_epochs(SAEConfig(), 10_000_000)    # far larger: one pass
    1
    >>> planned_epochs(SAEConfig(epochs=2), 15_000)
    2
    """
    if cfg.epochs is not None:
        return cfg.epochs
    return max(1, math.ceil(cfg.steps * cfg.batch_size / max(rows, 1)))


def topk_size_warning(cfg: SAEConfig, d_in: int) -> str | None:
    """A line for the log when a TopK kind keeps as many latents per row as the input has dimensions:
    it can then rebuild the input exactly from a few latents and the rest die (k 64 on GPTRec's
    64 dimensions: EV 1.000, 92% dead; docs/sae-eval.md). None when the size is fine.

    >>> topk_size_warning(SAEConfig(kind="topk", k=64), 64)
    'sae.k=64 >= the 64 input dimensions: a topk SAE with that many active latents reconstructs exactly and most of its latents die; use k < 64 (the default is 32)'
    >>> topk_size_warning(SAEConfig(kind="topk", k=32), 64) is None, topk_size_warning(SAEConfig(kind="relu", k=64), 64) is None
    (True, True)
    """
    if cfg.kind in ("topk", "batchtopk", "matryoshka") and cfg.k >= d_in:
        return (f"sae.k={cfg.k} >= the {d_in} input dimensions: a {cfg.kind} SAE with that many active latents "
                f"reconstructs exactly and most of its latents die; use k < {d_in} (the default is 32)")
    return None


@dataclass
class SAEOutput:
    x_hat: torch.Tensor
    f: torch.Tensor
    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class SparseAutoencoder(nn.Module):
    """Base class: subclasses define ``activation`` (pre-activations -> codes) and ``sparsity_loss``."""

    def __init__(self, d_in: int, cfg: SAEConfig):
        super().__init__()
        self.d_in, self.cfg = d_in, cfg
        g = torch.Generator().manual_seed(cfg.seed)
        W_dec = torch.randn(cfg.n_latents, d_in, generator=g)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.n_latents))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("since_fired", torch.zeros(cfg.n_latents, dtype=torch.long))
        self.normalizer = Normalizer.identity()

    # ------------------------------------------------------------------ interface
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        # = (x - b_dec) W_enc + b_enc, written so b_dec's gradient is a vector-matrix product
        # instead of a full (batch x latents x d) GEMM through the centred input; the bias goes
        # into the GEMM (addmm), not a second pass over the (batch x latents) result
        return torch.addmm(self.b_enc - self.b_dec @ self.W_enc, x, self.W_enc)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes for normalised activations; never depends on other rows of the batch."""
        return self.activation(self.pre_acts(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def sparsity_loss(self, f: torch.Tensor, pre: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def train_codes(self, pre: torch.Tensor) -> torch.Tensor:
        """Codes used in training (BatchTopK overrides: the batch decides there)."""
        return self.activation(pre)

    def forward(self, x: torch.Tensor) -> SAEOutput:
        pre = self.pre_acts(x)
        f = self.train_codes(pre) if self.training else self.activation(pre)
        x_hat = self.decode(f)
        parts = {"recon": self.recon_loss(x, x_hat), **self.sparsity_loss(f, pre)}
        if self.training:
            self._track_dead((f > 0).any(0), f.shape[0])
            aux = self.aux_loss(x, x_hat, pre)
            if aux is not None:
                parts["auxk"] = aux
        return SAEOutput(x_hat, f, sum(parts.values()), parts)

    def recon_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Mean over rows of ||x - x_hat||^2 (``recon="squared"``) or ||x - x_hat|| (``"l2"``)."""
        err = (x - x_hat).pow(2).sum(-1)
        return err.mean() if self.cfg.recon == "squared" else err.clamp_min(1e-12).sqrt().mean()

    # ------------------------------------------------------------------ training helpers
    def has_manual_grads(self) -> bool:
        """Whether :meth:`loss_and_grads` replaces ``forward`` + autograd in training."""
        return False

    def loss_and_grads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training loss parts with the gradients written to ``.grad`` (kinds that can do it by hand)."""
        raise NotImplementedError

    def aux_loss(self, x, x_hat, pre) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def _track_dead(self, fired: torch.Tensor, rows: int) -> None:
        """Count ``rows`` more activations since each latent last fired; reset those in ``fired``."""
        self.since_fired += rows
        self.since_fired[fired] = 0

    def dead_mask(self) -> torch.Tensor:
        return self.since_fired >= self.cfg.dead_window

    @torch.no_grad()
    def init_from_sample(self, x: torch.Tensor) -> None:
        """Initialise from a sample of normalised activations: b_dec at their mean (or geometric
        median), then W_enc rescaled so reconstructions start at the inputs' size.

        With W_enc = W_dec^T and thousands of unit rows over a 64-d space, about half the latents
        fire at init and the reconstruction starts ~m/(2d) times too large; the first epochs would
        only shrink it. ReLU-type codes scale linearly with W_enc, so one factor fixes it (as in
        openai/sparse_autoencoder).

        The factor is measured on the codes training starts from (``train_codes``), not the
        inference ones: BatchTopK's inference threshold is not yet estimated (a plain ReLU, half
        the latents), so sizing on it left its encoder ~5x too small for its k per row; the few
        latents that won the first batches grew their encoder columns first and kept winning,
        and most of the dictionary never fired (ML-1M: 74% dead).
        """
        if self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(x))
        else:
            self.b_dec.copy_(x.mean(0))
        x_hat = self.decode(self.train_codes(self.pre_acts(x)))
        got = (x_hat - self.b_dec).norm(dim=1).mean()
        want = (x - self.b_dec).norm(dim=1).mean()
        if got > 0:
            self.W_enc.mul_(want / got)

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        if self.W_dec.grad is not None:
            W = self.W_dec
            self.W_dec.grad -= (self.W_dec.grad * W).sum(1, keepdim=True) * W

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < eps * max(1.0, float(y.norm())):
            return y_new
        y = y_new
    return y


def build_sae(d_in: int, cfg: SAEConfig) -> SparseAutoencoder:
    from .jumprelu import JumpReLUSAE
    from .relu import ReLUSAE
    from .matryoshka import MatryoshkaSAE
    from .topk import BatchTopKSAE, TopKSAE

    return {"relu": ReLUSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE, "jumprelu": JumpReLUSAE,
            "matryoshka": MatryoshkaSAE}[cfg.kind](d_in, cfg)


def save_sae(folder: str | Path, sae: SparseAutoencoder, extra: dict | None = None) -> None:
    """``sae.safetensors`` + ``cfg.json`` (architecture, normaliser, anything in ``extra``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    save_tensors(folder / "sae.safetensors", tensors)
    meta = {"d_in": sae.d_in, "sae": asdict(sae.cfg), "normalizer": sae.normalizer.to_dict(), **(extra or {})}
    write_text(folder / "cfg.json", json.dumps(meta, indent=2))


def load_sae(folder: str | Path) -> tuple[SparseAutoencoder, dict]:
    folder = Path(folder)
    meta = json.loads((folder / "cfg.json").read_text())
    sae = build_sae(int(meta["d_in"]), SAEConfig(**meta["sae"]))
    sae.load_state_dict(load_file(str(folder / "sae.safetensors")))
    sae.normalizer = Normalizer.from_dict(meta["normalizer"])
    return sae.eval(), meta
