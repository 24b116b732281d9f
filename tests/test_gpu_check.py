"""benchmarks/gpu_check.py at a tiny size with Ray blocked: the GPU machine has no Ray, so every
module the check touches must import and run without it (issue 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--small", "--device", "cpu", "--scale", "0.001", "--steps", "1", "--batch-tokens", "512", "--train-seconds", "0",
        "--latency-calls", "2", "--sae-rows", "1000", "--sae-epochs", "1", "--eval-users", "10",
        "--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.max_len=20",
        "--set", "sae.n_latents=32", "--set", "sae.k=8", "--set", "train.batch_tokens=512"]


def test_gpu_check_runs_ray_free_at_a_tiny_size(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *TINY, "--out", str(out),
                        "--workdir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert list(r["steps"]) == ["data", "train_throughput", "train", "evaluate", "recommend", "extract", "sae"]
    assert r["ray_imported"] is False and r["device"] == "cpu"
    assert r["steps"]["evaluate"]["test_users"] > 0 and r["steps"]["sae"]["rows"] > 0
    assert set(r["steps"]["train_throughput"]["tokens_per_second"]) == {"fp32@512", "bf16@512"}
