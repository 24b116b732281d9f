"""Typed configuration: one dataclass per stage, YAML files plus ``--set section.key=value``.

The resolved config is saved in the run directory (``RUN/config.yaml``) so every stage
and every rerun sees exactly what produced the artifacts.

Choices are written once, in the field's type, and checked when a value is set and when a
section is built, so a typo fails with the valid values instead of silently meaning the default:

- a fixed set of strings: ``loss: Literal["ce", "sampled"] = "ce"``;
- anything else a plain type cannot say (a free string with a format, a range):
  ``Annotated[str, check]`` where ``check(value)`` raises ``ValueError(reason)``.
  Both give one line, e.g. ``train.loss: 'cee' is not one of 'ce', 'sampled'``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal


from .checks import (Failures, Fraction, NonNegative, NonNegativeFloat, Positive, PositiveFloat, Probability,
                     UnitInterval)
from .errors import UsageError
from .sae.base import SAEConfig


class Section:
    """Base of every config section: checks its choice fields when built (``Literal``/``Annotated``)."""

    def __post_init__(self):
        check_choices(self)


@dataclass
class DataConfig(Section):
    """Where interactions come from and what the documented filters drop."""

    dataset: str = "ml-1m"            # a GroupLens name, a folder under SAEREC_DATA_DIR, or "synthetic"
    data_dir: str | None = None       # an explicit folder always wins over `dataset`
    min_rating: float | None = None   # keep interactions with rating >= this (None: keep all, as the paper)
    popularity_buckets: Positive = 3       # popularity:low/mid/high by train interaction count
    synthetic_preset: Literal["small", "ml-20m"] = "small"   # only for dataset == "synthetic" (docs/data.md)
    synthetic_scale: PositiveFloat = 1.0   # multiplies the preset's users (ml-20m 0.1: 13,849 users, ~2M interactions)
    synthetic_users: Positive = 2000       # small preset only
    synthetic_items: Positive = 500
    synthetic_genres: Positive = 8
    synthetic_seed: int = 0


@dataclass
class SplitConfig(Section):
    """The paper's split (RePlay NewUsersSplitter + ColdUserRandomSplitter)."""

    test_fraction: Fraction = 0.1        # most recent new users -> test
    sae_fraction: Fraction = 0.4         # share of train users held out for the SAE (and validation)
    seed: int = 42
    val_users: Positive = 10_000           # SAE-part users whose last item is the validation target


BUILTIN_ARCHS = ("gptrec", "sasrec", "bert4rec")


def _arch(value: str) -> None:
    """A built-in architecture, or a user's factory as ``package.module:function``."""
    if value in BUILTIN_ARCHS:
        return
    mod, sep, fn = str(value).partition(":")
    if not (sep and mod and fn and all(p.isidentifier() for p in mod.split(".")) and fn.isidentifier()):
        raise ValueError(f"{value!r} is not one of {', '.join(map(repr, BUILTIN_ARCHS))} "
                         "nor a factory 'package.module:function'")


@dataclass
class ModelConfig(Section):
    """The recommender. Built-in architectures share these sizes (GPTRec defaults from the paper:
    3 layers, 2 heads, hidden 64, max length 200); a factory ``package.module:function`` is called
    as ``function(n_items=..., **factory_kwargs)`` and returns a
    :class:`saerec.model.interface.SequentialRecommender` (docs/models.md)."""

    arch: Annotated[str, _arch] = "gptrec"
    factory_kwargs: dict = field(default_factory=dict)   # for a factory arch only
    factory_path: str | None = None   # a folder put on sys.path before importing a factory (every Ray worker does)
    n_layers: Positive = 3
    n_heads: Positive = 2
    d_model: Positive = 64
    max_len: Positive = 200
    dropout: Probability = 0.1        # embedding and residual dropout
    attn_dropout: Probability = 0.0         # >0 forces the slow non-fused attention path on CPU


@dataclass
class TrainConfig(Section):
    """GPTRec training on Ray Train."""

    epochs: Positive = 200                 # upper bound; early stopping usually ends sooner
    patience: Positive | None = None  # epochs without validation NDCG@10 improvement; None: 5 for next-item models (5 vs 10: docs/results.md), 20 for masked ones (BERT4Rec sits at popularity level for ~15 epochs: docs/models.md)
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    batch_tokens: Positive | Literal["auto"] = "auto"   # token budget per batch (length-bucketed, little padding); auto: 4096 on CPU, scaled to a GPU's free memory (saerec/train/budget.py)
    windows: Literal["all", "last"] = "all"              # "all": every chunk of each history; "last": the most recent max_len+1 items (authors)
    loss: Literal["ce", "sampled", "bce"] = "ce"         # "ce" full softmax, "sampled" (sampled softmax with logQ correction), "bce" (one uniform negative per position: the original SASRec)
    num_negatives: Positive = 1024         # for loss == "sampled"
    negatives: Literal["uniform", "inbatch"] = "uniform"  # "uniform" or "inbatch" (popularity-proportional)
    num_workers: Positive = 1
    cpus_per_worker: PositiveFloat | None = None   # default: the cluster's CPUs split evenly
    use_gpu: bool | None = None       # None: auto-detect
    seed: int = 0
    ce_chunk: NonNegative = 256               # rows per chunk of the fused full-softmax CE on CPU (0: plain)
    eval_batch_size: Positive = 256
    max_failures: Failures = 2             # worker failures survived by resuming from the last checkpoint
    mask_prob: Probability = 0.2       # masked (Cloze) models: share of positions masked (BERT4Rec authors: 0.2)
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # training matmuls: auto = bf16 on GPU, fp32 on CPU (saerec/precision.py)


@dataclass
class ActivationsConfig(Section):
    """Which hidden state the SAE reads, and how Ray Data streams users through the model."""

    layer: str = "block.0"            # the paper: output of the first block
    actors: Positive = 1                   # Ray Data actor pool size (one model replica each)
    users_per_batch: Positive = 64
    object_store_mb: Positive = 128        # Ray Data's object store budget for the stream (bounds the stage's memory)
    block_mb: Positive = 16                # largest block Ray Data makes (the read of one big sequences file is cut to it)


@dataclass
class SAEStageConfig(Section):
    num_workers: Positive = 1              # Ray Train workers for SAE training
    max_failures: Failures = 2             # worker failures survived by resuming from the last checkpoint
    cache_shard: bool = True          # epochs after the first replay each worker's shard from node-local disk
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # SAE training matmuls: auto = bf16 on GPU, fp32 on CPU


@dataclass
class SteerConfig(Section):
    """``saerec steer-eval``: the paper's sweep (Section 8.2) over attributes' top features."""

    attributes: list[str] = field(default_factory=lambda: ["Action", "Children", "Fantasy", "Sci-Fi", "Western"])
    value_min: float = -10.0
    value_max: float = 10.0
    value_step: PositiveFloat = 1.0
    mode: Literal["set", "add", "scale"] = "set"   # SAE sweep (Figure 8): set the feature at the last step, as the paper
    positions: Literal["last"] = "last"            # the sweep replays last-step edits only (Steerer.recommend_variants)
    splices: list[Literal["delta", "reconstruction"]] = field(default_factory=lambda: ["delta", "reconstruction"])
    probe: bool = True                # SAE vs linear probe, both with mode add (Figure 9)
    probe_rows: Positive = 100_000         # activation rows sampled to fit each probe
    k: Positive = 10
    eval_positions: Positive = 10          # next-item predictions per test user (its last items); 1 = the paper's last item only
    max_users: Positive | None = 1000      # test users the sweep is measured on (a seeded sample when more; None: all)
    batch_size: Positive = 512
    score_mb: Positive = 512               # the sweep's (rows x items) score chunk: fewer rows per chunk for a larger catalogue


def _k_values(ks: list[int]) -> None:
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"{ks!r} must be a non-empty list of latent counts >= 1")


@dataclass
class SAEEvalConfig(Section):
    """``saerec sae-eval``: the SAE suite over test users (docs/sae-eval.md)."""

    k_values: Annotated[list[int], _k_values] = field(default_factory=lambda: [1, 2, 5, 10, 20])
    sample_rows: Positive = 100_000     # positions kept for the probes (memory bound)
    batch_rows: Positive = 8192         # positions encoded at a time while streaming
    min_label_confidence: UnitInterval = 0.2   # below: the feature is shown unlabelled
    probe_c: PositiveFloat = 1.0        # inverse L2 strength of every logistic regression


@dataclass
class RunConfig:
    """Everything a run needs; saved as RUN/config.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    sae_train: SAEStageConfig = field(default_factory=SAEStageConfig)
    steer: SteerConfig = field(default_factory=SteerConfig)
    sae_eval: SAEEvalConfig = field(default_factory=SAEEvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "RunConfig":
        cfg = cls()
        if not isinstance(d or {}, dict):
            raise UsageError(f"a config must be a mapping of sections (data, train, ...), got {type(d).__name__}")
        for section, values in (d or {}).items():
            if not hasattr(cfg, section) or not dataclasses.is_dataclass(getattr(cfg, section)):
                raise UsageError(f"unknown config section '{section}' (known: {', '.join(_sections(cfg))})")
            if not isinstance(values, dict):
                raise UsageError(f"config section '{section}' must be a mapping")
            for key, value in values.items():
                set_value(cfg, f"{section}.{key}", value)
        return cfg

    def save(self, path: Path) -> None:
        import yaml

        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        import yaml

        try:
            return cls.from_dict(yaml.safe_load(Path(path).read_text()))
        except yaml.YAMLError as e:
            raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _sections(cfg) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg)]


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check/convert a YAML value to a dataclass field's type (int -> float allowed)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = _coerce(value, base, name)
        for check in checks:
            try:
                check(value)
            except ValueError as e:
                raise UsageError(f"{name}: {e}") from None
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        raise UsageError(f"{name}: {value!r} is not one of {', '.join(map(repr, choices))}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except UsageError as e:
                errors.append(str(e))
        if len(errors) > 1:                        # e.g. batch_tokens: a number or 'auto'
            reasons = "; ".join(e.removeprefix(f"{name}: ").removeprefix(f"{name} ") for e in errors)
            raise UsageError(f"{name}: {value!r} is not a valid value ({reasons})")
        raise UsageError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):                 # --set steer.attributes=Action,Sci-Fi, sae_eval.k_values=1,5
            import yaml

            value = [v.strip() if item is str else yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UsageError(f"{name} must be a list, got {value!r}")
        return [_coerce(v, item, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):                 # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:                               # --set model.factory_kwargs='{d: 64}'
        if isinstance(value, dict):
            return value
    else:
        return value
    raise UsageError(f"{name} must be {tp.__name__}, got {value!r}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    """A section's field types, ``Annotated`` checks kept."""
    return typing.get_type_hints(cls, include_extras=True)


def _is_choice(tp: Any) -> bool:
    """Whether a type (or a part of it: ``list[...]``, ``... | None``) is a Literal or carries a check."""
    return typing.get_origin(tp) in (Literal, Annotated) or any(_is_choice(a) for a in typing.get_args(tp))


def check_choices(section: Any) -> None:
    """Check a section's choice fields; called when it is built, so ``TrainConfig(loss="cee")`` (or a
    stale ``config.yaml``, or a Ray worker's copy) fails at once instead of meaning the default."""
    prefix = _section_names().get(type(section), type(section).__name__)
    for key, tp in _hints(type(section)).items():
        if _is_choice(tp):
            setattr(section, key, _coerce(getattr(section, key), tp, f"{prefix}.{key}"))


@cache
def _section_names() -> dict[type, str]:
    """Section class -> its key in RunConfig (``TrainConfig`` -> ``train``), for error messages."""
    return {tp: name for name, tp in _hints(RunConfig).items()}


def set_value(cfg: RunConfig, dotted: str, value: Any) -> None:
    """Set ``section.key`` on a RunConfig, checking that both exist and the type fits."""
    if "." not in dotted:
        raise UsageError(f"config key '{dotted}' must look like section.key (e.g. train.epochs)")
    section, key = dotted.split(".", 1)
    sub = getattr(cfg, section, None)
    if sub is None or not dataclasses.is_dataclass(sub):
        raise UsageError(f"unknown config section '{section}' (known: {', '.join(_sections(cfg))})")
    hints = _hints(type(sub))
    if key not in hints:
        raise UsageError(f"unknown config key '{dotted}' (known in {section}: {', '.join(hints)})")
    setattr(sub, key, _coerce(value, hints[key], dotted))


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.key=value`` strings; values are parsed as YAML scalars."""
    import yaml                                    # imported here: building a config needs no PyYAML (gpu_check)

    for item in overrides or []:
        if "=" not in item:
            raise UsageError(f"--set expects section.key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        set_value(cfg, key.strip(), value)
    return cfg
