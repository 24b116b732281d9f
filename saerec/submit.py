"""``saerec submit``: run any saerec command as a Ray job on a cluster, follow its logs, return its status.

The job's runtime_env ships the working directory (the saerec checkout: code, configs; Ray honours
.gitignore, so run folders and venvs stay home) and, optionally, a pinned requirements file for
clusters whose image lacks saerec's dependencies. The entrypoint is ``python -m saerec ...`` run
from that directory, so the submitted code is what runs.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from .errors import UsageError

TERMINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 1}


def build_runtime_env(working_dir: str | None, requirements: str | None, env: dict[str, str]) -> dict:
    rt: dict = {"env_vars": {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), **env}}
    if working_dir:
        wd = Path(working_dir).expanduser()
        if not wd.is_dir():
            raise UsageError(f"--working-dir {wd}: no such directory")
        rt["working_dir"] = str(wd)
    if requirements:
        req = Path(requirements).expanduser()
        if not req.is_file():
            raise UsageError(f"--requirements {req}: no such file")
        rt["pip"] = [line.strip() for line in req.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return rt


def submit(address: str, argv: list[str], working_dir: str | None = ".", requirements: str | None = None,
           env: dict[str, str] | None = None, wait: bool = True, poll_s: float = 1.0, out=None,
           agent_wait_s: float = 120.0) -> int:
    """Submit ``saerec <argv>``; with ``wait``, stream the job's log and return 0 on success, 1 otherwise."""
    from ray.job_submission import JobSubmissionClient

    out = out or sys.stdout
    if not argv:
        raise UsageError("submit: give the saerec command to run, e.g. `saerec submit -- run --run runs/x`")
    client = JobSubmissionClient(address)
    entrypoint = "python -m saerec " + shlex.join(argv)
    runtime_env = build_runtime_env(working_dir, requirements, env or {})
    deadline = time.time() + agent_wait_s
    while True:
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except RuntimeError as e:                 # a freshly started head answers before its job agent is up
            if "No available agent" not in str(e) or time.time() > deadline:
                raise
            time.sleep(2)
    print(f"submitted {job_id} to {address}: {entrypoint}", file=out, flush=True)
    if not wait:
        return 0
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            out.write(logs[shown:])
            out.flush()
            shown = len(logs)
        if status in TERMINAL:
            info = client.get_job_info(job_id)
            print(f"job {job_id}: {status}" + (f" ({info.message})" if info.message and status != "SUCCEEDED" else ""),
                  file=out, flush=True)
            return TERMINAL[status]
        time.sleep(poll_s)
