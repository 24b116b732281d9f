"""``saerec run``: the stages in order over one run directory, resumable by content hash.

The stage contract lives here, once: :func:`pipeline_stages` lists each stage's name, the config
sections it reads, the run files it reads and writes, and the function that does its work and
returns its summary (the CLI prints the summaries; this module never prints).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

from .config import RunConfig
from .rundir import RunDir

log = logging.getLogger("saerec.pipeline")


@dataclass(frozen=True)
class Stage:
    name: str
    sections: tuple[str, ...]                       # config sections the stage reads
    inputs: tuple[str, ...]                         # run-relative files or folders, content-hashed
    outputs: tuple[str, ...]                        # all must exist for the stage to count as done
    run: Callable[[RunDir, RunConfig], dict | None]  # does the work and returns its summary (or None)


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
        self.data = run.read_json("pipeline.json") if run.has("pipeline.json") else {}

    def done(self, stage: Stage, key: str) -> bool:
        rec = self.data.get(stage.name, {})
        return rec.get("key") == key and all(self.run.has(o) for o in stage.outputs)

    def mark(self, stage: Stage, key: str, seconds: float) -> None:
        self.data[stage.name] = {"key": key, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.run.write_json("pipeline.json", self.data)


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
            run.push("pipeline.json")
    timings["total"] = time.time() - t_all
    return timings


# ---------------------------------------------------------------- the stages of `saerec run`

DATA_OUTPUTS = ("data/interactions.parquet", "data/sequences.parquet", "data/items.parquet", "data/split.json")


def record_metrics(run: RunDir, cfg: RunConfig, prep, extra: dict) -> dict:
    """Evaluate RUN's recommender on the test users (and popularity), add ``extra`` (training stats,
    or what import-model checked) and write ``recommender/metrics.json``; returns the metrics."""
    from .eval.evaluate import evaluate_run

    metrics = {**evaluate_run(run, prep, batch_size=cfg.train.eval_batch_size), **extra}
    run.write_json("recommender/metrics.json", metrics)
    return metrics


def train_and_evaluate(run: RunDir, cfg: RunConfig, prep, resume: bool = False,
                       t_start: float | None = None) -> dict:
    """The train stage: Ray Train fits the recommender, then it is evaluated (``record_metrics``)."""
    from .train.ray_train import train_recommender

    return record_metrics(run, cfg, prep, train_recommender(run, cfg, prep, resume=resume, t_start=t_start))


def pipeline_stages(resume: bool = False) -> list[Stage]:
    """The stages of ``saerec run``, in order; ``resume`` continues an interrupted training."""

    def data(run, cfg):
        from .data.prepare import prepare
        prepare(run, cfg, force=True)

    def train(run, cfg):
        from .data.prepare import load_prepared
        return train_and_evaluate(run, cfg, load_prepared(run), resume=resume)

    def extract(run, cfg):
        from .sae.stage import extract_stage
        return extract_stage(run, cfg)

    def sae(run, cfg):
        from .sae.stage import sae_stage
        return sae_stage(run, cfg)

    def interpret(run, cfg):
        from .interpret.stage import interpret_stage
        return interpret_stage(run)

    def steer(run, cfg):
        from .steer.stage import steer_eval_stage
        return steer_eval_stage(run, cfg)

    D = DATA_OUTPUTS
    return [
        Stage("data", ("data", "split"), (), D, data),
        Stage("train", ("model", "train"), D, ("recommender/model.safetensors", "recommender/metrics.json"), train),
        Stage("extract", ("activations",), ("recommender/model.safetensors", "data/sequences.parquet"),
              ("activations/meta.json",), extract),
        Stage("sae", ("sae", "sae_train"), ("activations",), ("sae/sae.safetensors", "sae/metrics.json"), sae),
        Stage("interpret", (), ("sae/sae.safetensors", "activations/test", "recommender/items.parquet"),
              ("interpret/catalog.parquet", "interpret/summary.json"), interpret),
        Stage("steer", ("steer",), ("sae/sae.safetensors", "interpret/attributes.parquet", "interpret/catalog.parquet",
                                    "data/sequences.parquet"), ("steer/summary.json",), steer),
    ]
