"""What every group of commands shares: the one-line-error parser, the run/config flags, config
resolution, the metrics table, and the checks before a stage that needs a trained recommender."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import RunConfig, apply_overrides
from ..errors import SaerecError, UsageError
from ..layout import A


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str):  # noqa: D401
        raise UsageError(f"{self.prog}: {message} (see --help)")


def add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    """``--run``, ``--config``, ``--set`` (and the dataset choice, for commands that read the dataset)."""
    p.add_argument("--run", required=True, help="run directory (created if missing): a path, or a URI that "
                                                "pyarrow.fs opens (s3://, gs://, hdfs://, file://)")
    p.add_argument("--config", help="YAML config (sections data, split, model, train)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.epochs=20 (repeatable)")
    if data:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--data-dir", help="dataset folder (GroupLens layout or Parquet schema); always wins")
        g.add_argument("--dataset", help="dataset name: ml-1m (default), ml-20m, ml-100k, ml-latest-small, "
                                         "synthetic, or a folder name under SAEREC_DATA_DIR")


def resolve_config(args) -> RunConfig:
    """Base config (RUN/config.yaml if present, else --config, else defaults) + flags."""
    from ..rundir import RunDir

    run = RunDir(args.run)
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise UsageError(f"--config {path}: no such file")
        cfg = RunConfig.load(path)
    elif run.has(A.CONFIG):
        cfg = RunConfig.load(run.path(A.CONFIG))
    else:
        cfg = RunConfig()
    apply_overrides(cfg, args.set)
    if getattr(args, "data_dir", None):
        cfg.data.data_dir, cfg.data.dataset = args.data_dir, Path(args.data_dir).name
    elif getattr(args, "dataset", None):
        cfg.data.dataset, cfg.data.data_dir = args.dataset, None
    for flag, key in (("num_workers", "num_workers"), ("epochs", "epochs"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(cfg.train, key, v)
    if getattr(args, "layer", None):
        cfg.activations.layer = args.layer
    if getattr(args, "kind", None):
        cfg.sae.kind = args.kind
    return cfg


def stage_run(args) -> tuple:
    """The run and its resolved config (saved) for a stage that needs RUN's trained recommender."""
    from ..rundir import RunDir

    run = RunDir(args.run)
    if not run.has(A.WEIGHTS):
        raise SaerecError(f"{run.recommender}: no trained recommender; run `saerec train --run {args.run}` first")
    cfg = resolve_config(args)
    cfg.save(run.path(A.CONFIG))
    return run, cfg


# the command that writes each artifact a later command needs
MAKES = {A.WEIGHTS: "train", A.SAE_WEIGHTS: "sae", A.FEATURES: "interpret"}


def require(run, given: str, *artifacts: str) -> None:
    """One line naming the first missing artifact and the command that makes it (``given``: --run as typed)."""
    for rel in artifacts:
        if not run.has(rel):
            raise SaerecError(f"{run.root / rel} is missing; run `saerec {MAKES[rel]} --run {given}` first")


def item_ids(text: str, flag: str = "--history") -> list[int]:
    """``--history 1,2,3`` (or ``flag``): dataset item ids, oldest first."""
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(f"{flag} expects comma-separated item ids, got {text!r}") from None


def table(rows: list[tuple[str, dict]], keys: list[str]) -> str:
    head = f"{'':<12}" + "".join(f"{k:>14}" for k in keys)
    lines = [head] + [f"{name:<12}" + "".join(f"{m.get(k, float('nan')):>14.4f}" for k in keys) for name, m in rows]
    return "\n".join(lines)
