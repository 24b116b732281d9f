"""Shared fixtures: one local Ray runtime per test session, real data folders, tmp run dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")          # loopback-only test clusters
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("SAEREC_OFFLINE", "1")                 # tests never reach the internet
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAEREC_DATA_DIR", REPO.parent / "shared" / "data"))


def data_folder(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"{p} not available (set SAEREC_DATA_DIR)")
    return p


@pytest.fixture(scope="session")
def ray_session():
    """One shared local Ray runtime for the whole session (2 cores: oversubscribed logical CPUs)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 object_store_memory=300 * 1024 * 1024, logging_level="WARNING")
    yield ray
    ray.shutdown()
