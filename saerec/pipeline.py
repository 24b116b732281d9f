"""``saerec run``: the stages in order over one run directory, resumable by content hash.

Each stage module declares its own contract (``STAGE``: name, config sections, run files read and
written, the function that does the work and returns its summary; see ``saerec/contract.py``);
:func:`pipeline_stages` only puts them in order. The CLI prints the summaries; this module never
prints.

Each stage has a key: the SHA-256 of its config sections and of the *content* of its input files
(the dataset's files for ``data``; the previous stages' artifacts after that). A stage whose key
matches the one recorded in ``RUN/pipeline.json`` and whose outputs exist is skipped; anything else
reruns, and since its outputs change, so do the keys of the stages after it. Changing
``sae.l1`` therefore reruns sae -> interpret -> steer and leaves data, train and extract alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Mapping

from .config import RunConfig
from .contract import Stage
from .rundir import A, RunDir

log = logging.getLogger("saerec.pipeline")


def file_digest(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def content_hash(paths: list[Path]) -> str:
    """SHA-256 over the names and bytes of every file under ``paths`` (sorted, so order-free)."""
    h = hashlib.sha256()
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.exists() else []
        if not files:
            h.update(f"missing:{p.name}".encode())
        for f in files:
            h.update(str(f.relative_to(p.parent)).encode())
            file_digest(f, h)
    return h.hexdigest()


def data_source(cfg: RunConfig) -> list[Path]:
    """The dataset folder's files (nothing for the synthetic generator: its config is its input)."""
    if cfg.data.dataset == "synthetic" and not cfg.data.data_dir:
        return []
    from .data.download import resolve
    try:
        return [resolve(cfg.data.dataset, cfg.data.data_dir)]
    except Exception:                                 # not downloaded yet: the data stage will fetch it
        return [Path("unresolved") / cfg.data.dataset]


def stage_key(stage: Stage, run: RunDir, cfg: RunConfig) -> str:
    conf = {s: asdict(getattr(cfg, s)) for s in stage.sections}
    inputs = data_source(cfg) if stage.name == "data" else [run.root / i for i in stage.inputs]
    blob = json.dumps({"stage": stage.name, "config": conf, "inputs": content_hash(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Record:
    """``RUN/pipeline.json``: per stage, the key it last finished with and how long it took."""

    def __init__(self, run: RunDir):
        self.run = run
        self.data = run.read_json(A.PIPELINE) if run.has(A.PIPELINE) else {}

    def done(self, stage: Stage, key: str) -> bool:
        rec = self.data.get(stage.name, {})
        return rec.get("key") == key and all(self.run.has(o) for o in stage.outputs)

    def mark(self, stage: Stage, key: str, seconds: float) -> None:
        self.data[stage.name] = {"key": key, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.run.write_json(A.PIPELINE, self.data)


def stage_folders(stage: Stage) -> list[str]:
    """The run folders a stage writes (the first component of its outputs)."""
    return sorted({o.split("/")[0] for o in stage.outputs})


def run_pipeline(run: RunDir, cfg: RunConfig, stages: list[Stage], force: bool = False,
                 printer=print, report: Mapping[str, Callable[[dict], None]] | None = None) -> dict[str, float]:
    """Run or skip each stage in order; returns seconds per stage (0 for skipped ones). ``report``
    maps a stage name to the function that prints the summary of a stage that ran. A remote run
    is pushed to its URI after each stage: its folders first, then ``pipeline.json``."""
    record = Record(run)
    timings: dict[str, float] = {}
    t_all = time.time()
    for stage in stages:
        key = stage_key(stage, run, cfg)
        if not force and record.done(stage, key):
            printer(f"stage {stage.name}: up to date (key {key}), skipped")
            timings[stage.name] = 0.0
            continue
        printer(f"stage {stage.name}: running (key {key})")
        t = time.time()
        summary = stage.run(run, cfg)
        if report and stage.name in report:
            report[stage.name](summary)
        timings[stage.name] = time.time() - t
        if stage.name == "data":                      # the source may only exist now (downloaded)
            key = stage_key(stage, run, cfg)
        record.mark(stage, key, timings[stage.name])
        if run.remote:
            for folder in stage_folders(stage):
                run.push(folder)
            run.push(A.PIPELINE)
    timings["total"] = time.time() - t_all
    return timings


# ---------------------------------------------------------------- the stages of `saerec run`

def pipeline_stages(resume: bool = False) -> list[Stage]:
    """The stages of ``saerec run``, in order; ``resume`` continues an interrupted training."""
    from .activations import stage as extract
    from .data import stage as data
    from .interpret import stage as interpret
    from .sae import stage as sae
    from .saeeval import stage as saeeval
    from .steer import stage as steer
    from .train import stage as train

    return [data.STAGE, train.resuming() if resume else train.STAGE, extract.STAGE, sae.STAGE,
            interpret.STAGE, steer.STAGE, saeeval.STAGE]
