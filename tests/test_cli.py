import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import error_lines

from saerec.cli import main
from saerec.config import RunConfig, apply_overrides
from saerec.errors import UsageError


@pytest.mark.parametrize("argv, needle", [
    (["train"], "required: --run"),
    (["train", "--run", "x", "--set", "train.epochs=abc"], "train.epochs must be int"),
    (["train", "--run", "x", "--set", "model.nope=1"], "unknown config key 'model.nope'"),
    (["train", "--run", "x", "--set", "epochs=3"], "must look like section.key"),
    (["frobnicate"], "invalid choice"),
    (["train", "--run", "x", "--config", "/does/not/exist.yaml"], "no such file"),
    (["evaluate", "--run", "/nonexistent/run"], "run `saerec"),
    (["data", "--run", "x", "--data-dir", "/nonexistent/folder"], "no such directory"),
])
def test_usage_errors_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(error_lines(err)) == 1 and needle in err, err


def test_yaml_config_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  n_layers: 2\ntrain:\n  lr: 0.01\n")
    cfg = RunConfig.load(p)
    assert cfg.model.n_layers == 2 and cfg.train.lr == 0.01 and cfg.model.d_model == 64
    apply_overrides(cfg, ["train.lr=1", "train.use_gpu=false", "data.data_dir=null"])
    assert cfg.train.lr == 1.0 and cfg.train.use_gpu is False and cfg.data.data_dir is None
    p.write_text("bogus:\n  x: 1\n")
    with pytest.raises(UsageError, match="unknown config section 'bogus'"):
        RunConfig.load(p)


def test_console_script_trains_and_evaluates_end_to_end(tmp_path):
    """The installed `saerec` console script (what the RayJob's entrypoint runs, not `python -m saerec`),
    its own local Ray runtime, real files."""
    saerec = shutil.which("saerec", path=str(Path(sys.executable).parent))
    assert saerec, f"no saerec console script beside {sys.executable}: install the package (pip install -e .)"
    run = tmp_path / "run"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    base = ["--set", "data.synthetic_users=400", "--set", "data.synthetic_items=100",
            "--set", "model.n_layers=1", "--set", "model.d_model=16", "--set", "model.max_len=30",
            "--set", "train.patience=2"]
    r = subprocess.run([saerec, "train", "--run", str(run), "--dataset", "synthetic",
                        "--epochs", "2", *base], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run / "recommender" / "metrics.json").read_text())
    for key in ("ndcg@10", "hit_rate@10", "coverage@10", "mrr@10", "train_tokens_per_second", "dataset", "split"):
        assert key in m
    assert m["dataset"] == "synthetic" and m["split"]["test"]["users"] > 0
    assert "popularity" in r.stdout and m["arch"] == "gptrec" and "gptrec" in r.stdout     # the default model.arch
    r = subprocess.run([saerec, "evaluate", "--run", str(run)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "recommender" / "metrics.json").read_text())["ndcg@10"] == pytest.approx(m["ndcg@10"])
