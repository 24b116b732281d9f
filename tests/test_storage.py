"""Run directories on a URI (pyarrow.fs): the local copy's pull/push rules, and `saerec run` over a
file:// URI, resumed from the URI alone after the local copy is deleted."""

import json
import shutil
from pathlib import Path

from saerec.cli import main
from saerec.storage import SYNCED, RemoteStore

from test_pipeline import TINY, stage_lines


def tree(root: Path) -> dict[str, bytes]:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in root.rglob("*") if f.is_file() and f.name != SYNCED}


def test_pull_and_push_mirror_the_run_but_leave_ray_storage_on_the_uri(tmp_path):
    remote = tmp_path / "bucket" / "run"
    (remote / "sae" / "ray" / "sae" / "checkpoint_000001").mkdir(parents=True)
    (remote / "sae" / "ray" / "sae" / "checkpoint_000001" / "w.bin").write_bytes(b"ckpt")
    (remote / "sae" / "metrics.json").write_text('{"ev": 0.9}')
    (remote / "pipeline.json").write_text("{}")
    store = RemoteStore(f"file://{remote}", cache=tmp_path / "cache")
    assert store.pull() == 2                                     # Ray Train's storage stays remote
    assert tree(store.local) == {"sae/metrics.json": b'{"ev": 0.9}', "pipeline.json": b"{}"}
    (store.local / "stale.txt").write_text("x")
    assert store.pull() == 0 and not (store.local / "stale.txt").exists()   # pull mirrors; nothing changed
    assert store.push() == 0                                     # what was just pulled is not uploaded back
    (remote / "sae" / "metrics.json").write_text('{"ev": 0.8}')  # rewritten in place at the same size
    assert store.pull() == 1 and (store.local / "sae" / "metrics.json").read_text() == '{"ev": 0.8}'

    (store.local / "sae" / "metrics.json").write_text('{"ev": 0.95}')      # changed
    (store.local / "interpret").mkdir()
    (store.local / "interpret" / "catalog.parquet").write_bytes(b"pq")     # new
    (store.local / "pipeline.json").unlink()                               # gone
    store.push()
    assert tree(remote) == {"sae/metrics.json": b'{"ev": 0.95}', "interpret/catalog.parquet": b"pq",
                            "sae/ray/sae/checkpoint_000001/w.bin": b"ckpt"}
    store.delete("sae")
    assert not (remote / "sae").exists()


def test_run_on_a_uri_pushes_every_stage_and_resumes_from_the_uri(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAEREC_CACHE_DIR", str(tmp_path / "cache"))
    remote = tmp_path / "bucket" / "runs" / "tiny"
    uri = f"file://{remote}"
    assert main(["run", "--run", uri, *TINY]) == 0
    assert set(stage_lines(capsys.readouterr().out).values()) == {"running"}
    record = json.loads((remote / "pipeline.json").read_text())
    assert set(record) == {"data", "train", "extract", "sae", "interpret", "steer", "saeeval"}
    for rel in ("config.yaml", "data/sequences.parquet", "recommender/model.safetensors", "activations/meta.json",
                "sae/sae.safetensors", "interpret/catalog.parquet", "steer/summary.json", "saeeval/summary.json"):
        assert (remote / rel).is_file(), rel
    assert list((remote / "activations" / "sae").glob("*.parquet"))           # written by Ray Data to the URI
    assert list((remote / "recommender" / "ray" / "gptrec").glob("checkpoint_*"))   # Ray Train's storage_path
    assert list((remote / "sae" / "ray" / "sae").glob("checkpoint_*"))

    shutil.rmtree(tmp_path / "cache")                            # a new machine: only the URI is left
    assert main(["run", "--run", uri]) == 0
    assert set(stage_lines(capsys.readouterr().out).values()) == {"up"}
    assert main(["features", "--run", uri, "--limit", "3"]) == 0   # any command reads a remote run
    assert "feature" in capsys.readouterr().out.lower()
