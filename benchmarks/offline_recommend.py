"""Offline batch recommendations (``saerec recommend``): rows per second and peak memory, for the
test users of a run and for N synthetic users, side by side in one run.

Each case is one ``saerec recommend`` process with its own local Ray runtime (steered, Sci-Fi +3 by
default, and one excluded attribute, k=10). Measured: the command's wall time (Ray's start
included), the job's own time from its summary line (the stream, Ray's start excluded), output rows
per second over both, and the peak total PSS of the process tree (driver, GCS, raylet, workers;
sampled every 0.2 s: ``streaming_scale.measure``). The synthetic users have histories of 20..120
items drawn uniformly from the run's catalogue (the synthetic generator's lengths), written to a
Parquet file with ``user_id`` and ``items``. Writes JSON.

    python benchmarks/offline_recommend.py --run runs/main --users 100000
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_scale import measure  # noqa: E402


def synthetic_users(run: Path, n: int, path: Path, seed: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pq.read_table(run / "recommender" / "items.parquet", columns=["item_id"]).column("item_id").to_numpy()
    rng = np.random.default_rng(seed)
    lens = rng.integers(20, 121, n)
    flat = rng.choice(ids, int(lens.sum()))
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    pq.write_table(pa.table({"user_id": pa.array(np.arange(1, n + 1), pa.int64()),
                             "items": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int64()))}),
                   path, row_group_size=4096)
    return path


def case(name: str, run: Path, users: str, tmp: Path, extra: list[str]) -> dict:
    out = tmp / f"{name}.parquet"
    cmd = [sys.executable, "-m", "saerec", "recommend", "--run", str(run), "--users", users, "--out", str(out)] + extra
    log = tmp / f"{name}.log"
    m = measure(cmd, log)                  # exits on failure, naming the log
    text = log.read_text()
    s = re.search(r"([\d,]+) recommendations for ([\d,]+) users \(([\d,]+) scored in ([\d.]+)s", text)
    rows, n_users, job_s = int(s.group(1).replace(",", "")), int(s.group(2).replace(",", "")), float(s.group(4))
    return {"case": name, "users": n_users, "rows": rows, "wall_s": round(m["wall_seconds"], 1), "job_s": job_s,
            "rows_per_s_job": round(rows / job_s, 1), "users_per_s_job": round(n_users / job_s, 1),
            "rows_per_s_wall": round(rows / m["wall_seconds"], 1), "peak_pss_mb": round(m["peak_pss_mb"]),
            "processes_at_peak": m["processes_at_peak"], "command": " ".join(cmd[1:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run with a recommender, SAE and interpretation")
    ap.add_argument("--users", type=int, default=100_000, help="synthetic users (default 100000)")
    ap.add_argument("--edit", default="Sci-Fi=add:3")
    ap.add_argument("--exclude-attribute", default="Horror")
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--batch-users", type=int, default=256)
    ap.add_argument("--workdir", default="benchmarks/results/offline_recommend", help="outputs and logs")
    ap.add_argument("--out", default="benchmarks/results/offline_recommend.json")
    a = ap.parse_args()
    run = Path(a.run).resolve()
    extra = ["--edit", a.edit, "--exclude-attribute", a.exclude_attribute, "--actors", str(a.actors),
             "--batch-users", str(a.batch_users)]
    results = []
    tmp = Path(a.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    results.append(case("test_users", run, "test", tmp, extra))
    print(json.dumps(results[-1]), flush=True)
    users = synthetic_users(run, a.users, tmp / "users.parquet")
    results.append(case(f"synthetic_{a.users}", run, str(users), tmp, extra))
    print(json.dumps(results[-1]), flush=True)
    report = {"benchmark": "offline_recommend", "run": str(run), "machine": f"{platform.node()} "
              f"({platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs)",
              "when": time.strftime("%Y-%m-%d %H:%M"), "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
