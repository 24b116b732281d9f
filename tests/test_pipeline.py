"""`saerec run`: the whole pipeline on a tiny synthetic run (the default SAE kind, TopK), then resumed by content hash."""

import json

import pandas as pd

from saerec.cli import main
from test_sae_stage import assert_extraction_order

TINY = ["--dataset", "synthetic", "--epochs", "2",
        "--set", "data.synthetic_users=300", "--set", "data.synthetic_items=80", "--set", "data.synthetic_genres=5",
        "--set", "model.n_layers=2", "--set", "model.d_model=16", "--set", "model.max_len=30",
        "--set", "train.patience=2", "--set", "sae.n_latents=64", "--set", "sae.k=8", "--set", "sae.epochs=1",
        "--set", "sae.dead_window=2000", "--set", "steer.value_step=5", "--set", "steer.probe_rows=5000"]


def stage_lines(out: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[2] for line in out.splitlines()
            if line.startswith("stage ") and not line.startswith("stage timings")}


def test_run_is_resumable_by_content_hash(ray_session, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--run", str(run), *TINY]) == 0
    first = stage_lines(capsys.readouterr().out)
    assert first == {s: "running" for s in ("data", "train", "extract", "sae", "interpret", "steer", "saeeval")}, first
    rec = json.loads((run / "pipeline.json").read_text())
    assert set(rec) == set(first) and (run / "steer" / "summary.json").exists()
    assert (run / "saeeval" / "summary.json").exists()
    for part in ("sae", "test"):                                      # several blocks each, written in order
        assert_extraction_order(run, part, pd.read_parquet(run / "activations" / part))
    sae = json.loads((run / "sae" / "cfg.json").read_text())
    assert sae["sae"]["kind"] == "topk" and 0 < json.loads((run / "sae" / "metrics.json").read_text())["l0"] <= 8

    assert main(["run", "--run", str(run)]) == 0                      # nothing changed: all skipped
    again = stage_lines(capsys.readouterr().out)
    assert set(again.values()) == {"up"}, again

    assert main(["run", "--run", str(run), "--set", "sae.k=4"]) == 0      # only what depends on the SAE
    changed = stage_lines(capsys.readouterr().out)
    assert changed == {"data": "up", "train": "up", "extract": "up", "sae": "running", "interpret": "running",
                       "steer": "running", "saeeval": "running"}, changed

    (run / "interpret" / "catalog.parquet").unlink()                  # a missing output reruns its stage
    assert main(["run", "--run", str(run)]) == 0
    missing = stage_lines(capsys.readouterr().out)
    assert missing["interpret"] == "running" and missing["sae"] == "up"

    (run / "activations" / "meta.json").unlink()                      # re-extracting the same recommender
    assert main(["run", "--run", str(run)]) == 0                      # writes the same shards: the SAE's
    reextracted = stage_lines(capsys.readouterr().out)                # key stays, nothing after it reruns
    assert reextracted["extract"] == "running" and reextracted["sae"] == "up", reextracted
