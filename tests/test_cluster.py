"""A real two-node Ray cluster on loopback (`ray start --head` + `ray start --address`, separate
resources): `saerec submit` sends the pipeline on the synthetic dataset as a Ray job, it succeeds,
and its two training workers ran on different nodes. Also: the cluster-launcher config validates
against Ray's own schema."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from saerec.cli import main

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(marker: str) -> list[int]:
    """Pids of processes whose command line mentions ``marker``, and all their descendants (/proc)."""
    parent, cmd = {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = {p for p, c in cmd.items() if marker in c and p != os.getpid()}
    grew = True
    while grew:
        kids = {p for p, pp in parent.items() if pp in found} - found
        found |= kids
        grew = bool(kids)
    return sorted(found)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Head (2 CPUs, resource head_node) + worker (2 CPUs, resource worker_node); only these are stopped."""
    if not Path(RAY).exists():
        pytest.skip("the ray CLI is not installed next to this Python")
    temp = Path("/tmp") / f"saerec-cl-{os.getpid()}"          # short: Ray's socket paths have a length limit
    port, dash = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    common = ["--num-cpus=2", "--memory=4000000000", "--object-store-memory=200000000", "--disable-usage-stats"]
    # each node's dashboard agent on its own free port: the default (52365) is taken by the test session's
    # own local Ray runtime when a test before this module started it, and a head whose agent cannot
    # bind answers every job submission with "No available agent"
    subprocess.run([RAY, "start", "--head", f"--dashboard-agent-listen-port={free_port()}", f"--port={port}",
                    "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                    '--resources={"head_node": 1}', *common], check=True, env=env, capture_output=True, timeout=120)
    try:
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}',
                        f"--dashboard-agent-listen-port={free_port()}", *common],
                       check=True, env=env, capture_output=True, timeout=120)
        address = f"http://127.0.0.1:{dash}"
        from ray.job_submission import JobSubmissionClient
        end = time.time() + 60
        while True:                                                  # the job API comes up after the dashboard
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if time.time() > end:
                    raise
                time.sleep(1)
        yield address
    finally:
        for pid in _tree(str(temp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_submit_runs_the_pipeline_on_two_nodes(two_nodes, tmp_path, capsys):
    run = tmp_path / "run"
    job = ["run", "--run", str(run), "--dataset", "synthetic", "--epochs", "2",
           "--set", "data.synthetic_users=300", "--set", "data.synthetic_items=80", "--set", "model.n_layers=1",
           "--set", "model.d_model=16", "--set", "model.max_len=30",
           # two workers of 2 CPUs each: one per node, so the job has to use both
           "--set", "train.num_workers=2", "--set", "train.cpus_per_worker=2",
           "--set", "sae.n_latents=32", "--set", "sae.k=8", "--set", "sae.epochs=1", "--set", "sae.dead_window=2000",
           "--set", "steer.value_step=10", "--set", "steer.probe_rows=2000"]
    rc = main(["submit", "--address", two_nodes, "--working-dir", str(REPO), "--", *job])
    out = capsys.readouterr().out
    assert rc == 0, out[-4000:]
    assert "SUCCEEDED" in out and "stage timings" in out
    nodes = {(run / "recommender" / "ray" / "pids" / f"rank{r}.pid").read_text().split()[1] for r in (0, 1)}
    assert len(nodes) == 2, nodes                                    # the training workers sat on both nodes
    assert json.loads((run / "pipeline.json").read_text()).keys() >= {"train", "sae", "steer"}


def test_submit_reports_a_failing_job(two_nodes, capsys):
    assert main(["submit", "--address", two_nodes, "--working-dir", str(REPO), "--", "evaluate", "--run",
                 "/nonexistent/run"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cluster_launcher_config_validates_against_rays_schema():
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())
    jsonschema.validate(cfg, schema)
    assert any("saerec" in c for c in cfg["setup_commands"])
