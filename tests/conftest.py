"""Shared fixtures: one local Ray runtime per test session, real data folders, tmp run dirs."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")          # loopback-only test clusters
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("SAEREC_OFFLINE", "1")                 # tests never reach the internet
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAEREC_DATA_DIR", REPO.parent / "shared" / "data"))


NODE_BIN = REPO / ".ci" / "node" / "node_modules" / ".bin"      # where .ci/run puts buf and kustomize


def require_tool(name: str, installs: str) -> str:
    """The path of a command-line linter a test runs: on PATH, next to this Python, or in CI's npm folder.
    Without it the test skips, except under ``SAEREC_REQUIRE_TOOLS=1`` (set by .ci/run, which installs
    every such tool): there a missing tool fails the test, so a failed install cannot pass as a skip."""
    for path in (None, str(Path(sys.executable).parent), str(NODE_BIN)):
        found = shutil.which(name, path=path)
        if found:
            return found
    missing(f"{name} not installed ({installs})")


def require_module(name: str, installs: str):
    """A Python package a test is about (RecBole, sae-lens), imported: the policy of :func:`require_tool`."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(name) is None:
        missing(f"{name} not installed ({installs})")
    return importlib.import_module(name)


def missing(why: str) -> None:
    """Skip, or under ``SAEREC_REQUIRE_TOOLS=1`` (CI installs every tool and optional package the tests
    use) fail: a failed install must not pass as a skip."""
    if os.environ.get("SAEREC_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{why}; SAEREC_REQUIRE_TOOLS=1 says it must be", pytrace=False)
    pytest.skip(why)


RAY_FORWARDED = re.compile(r"^(\x1b\[[0-9;]*m)?\([^()]*pid=\d+[^()]*\)")   # "(PlacementGroupCleaner pid=7) ..."


def error_lines(err: str) -> list[str]:
    """The lines of a captured stderr that the code under test wrote: without the lines Ray's log
    monitor forwards, at any moment, from the session cluster's own actors (a PlacementGroupCleaner
    left by an earlier test's Train run, say), which made the one-line-error checks flaky."""
    return [line for line in err.strip().splitlines() if not RAY_FORWARDED.match(line)]


def data_folder(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"{p} not available (set SAEREC_DATA_DIR)")
    return p


@pytest.fixture(scope="session")
def ray_session():
    """One shared local Ray runtime for the whole session (2 cores: oversubscribed logical CPUs)."""
    import ray

    from saerec.raycluster import local_runtime_env

    if not ray.is_initialized():
        local_runtime_env()
        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 object_store_memory=300 * 1024 * 1024, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_run(ray_session, tmp_path_factory):
    """A small synthetic run (planted genres Action, Children, Fantasy, Sci-Fi, Western) with a trained
    GPTRec, shared by the SAE, interpretation and steering tests."""
    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import prepare
    from saerec.rundir import RunDir
    from saerec.train.ray_train import train_recommender

    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=500", "data.synthetic_items=120",
        "data.synthetic_genres=5", "model.n_layers=2", "model.d_model=32", "model.max_len=40",
        "train.epochs=3", "train.batch_tokens=2048", "train.lr=0.003",
        "sae.kind=relu", "sae.n_latents=128", "sae.epochs=2", "sae.l1=0.05", "sae.dead_window=5000",
    ])
    run = RunDir(tmp_path_factory.mktemp("sae") / "run")
    prep = prepare(run, cfg)
    train_recommender(run, cfg, prep)
    cfg.save(run.root / "config.yaml")
    with unchanged(run, ("data", "recommender")):
        yield run, cfg


def digests(root: Path, folders: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under ``root/<folder>`` (relative path -> digest), Ray Train's own storage
    (``*/ray/``) left out: a stage rewritten in place changes its artifacts too."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted((root / folder).rglob("*"))
            if p.is_file() and "ray" not in p.relative_to(root).parts}


@contextlib.contextmanager
def unchanged(run, folders: tuple[str, ...]):
    """A session run's files as built must be as built at the end of the session: a module that retrains
    or rewrites a stage in place (instead of in its ``copy_run``) would make other modules' results
    depend on test order. Files added later are not checked."""
    before = digests(run.root, folders)
    yield
    after = digests(run.root, folders)
    changed = sorted(rel for rel, digest in before.items() if after.get(rel) != digest)
    assert not changed, (f"the session run {run.root} was modified in place ({len(changed)} files, e.g. "
                         f"{', '.join(changed[:3])}): give the module that writes it copy_run's copy")


def copy_run(src: tuple, dest: Path, drop: tuple[str, ...] = ()) -> tuple:
    """A private copy of a session run ``(RunDir, config)`` for a module that writes into its run, so
    the session fixtures stay as built whatever order the modules run in. ``drop``: top-level folders
    left out (the stages the module runs itself)."""
    from saerec.rundir import RunDir

    run, cfg = src
    shutil.copytree(run.root, dest, ignore=lambda d, names: [n for n in names if Path(d) == run.root and n in drop])
    return RunDir(dest), copy.deepcopy(cfg)


LATER_STAGES = ("activations", "sae", "interpret", "steer", "tune")


@pytest.fixture(scope="module")
def own_trained_run(trained_run, tmp_path_factory):
    """``trained_run`` (data and recommender only) copied for one module that runs the later stages."""
    return copy_run(trained_run, tmp_path_factory.mktemp("own-trained") / "run", drop=LATER_STAGES)


@pytest.fixture(scope="module")
def own_interpreted_run(interpreted_run, tmp_path_factory):
    """``interpreted_run`` copied for one module that retrains a stage in it or adds one."""
    return copy_run(interpreted_run, tmp_path_factory.mktemp("own-interpreted") / "run")


@pytest.fixture(scope="session")
def interpreted_run(trained_run):
    """``trained_run`` with activations, an SAE and the interpretation tables (the steering inputs)."""
    from saerec.interpret.stage import interpret_stage
    from saerec.activations.stage import extract_stage
    from saerec.sae.stage import sae_stage

    run, cfg = trained_run
    if not run.has("activations/meta.json"):
        extract_stage(run, cfg)
    if not run.has("sae/sae.safetensors"):
        sae_stage(run, cfg)
    if not run.has("interpret/catalog.parquet"):
        interpret_stage(run)
    with unchanged(run, LATER_STAGES):
        yield run, cfg
