"""Streaming at scale: peak memory and throughput of the extract and SAE stages on synthetic logs
of 2M and 20M interactions (the ML-20M size), side by side in one run.

For each size: a synthetic log (a fixed catalog of --items items, users = interactions / 70, the
generator's mean length) is written to the generic Parquet schema in chunks, and `saerec data`
splits it. Then the two measured stages run, each as its own `saerec` process with a local Ray runtime:
- extract: `saerec extract` (a Ray Data actor pool writing Parquet shards for the SAE part and the test users);
- sae: `saerec sae --set sae.epochs=E` (Ray Train reading Ray Data shards, then the SAE metrics).

The peak is the largest total PSS over the stage's whole process tree: the driver, the GCS, the
raylet and every worker, sampled every 0.2 s. PSS (proportional set size) splits shared pages, such
as Ray's object store, between the processes that map them, so nothing is counted twice. Both sizes
use the same GPTRec, trained for --epochs on the smallest log. A forward pass costs the same memory
and time whatever the weights, and training on 20M interactions would take this benchmark's whole
budget. Writes JSON.

    python benchmarks/streaming_scale.py                               # 2M and 20M: about 30 min on 2 cores
    python benchmarks/streaming_scale.py --sizes 200000 2000000        # a quicker check
    python benchmarks/streaming_scale.py --stages extract              # the extract stage only (about 10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

MEAN_LEN = 70          # SyntheticConfig: lengths uniform in 20..120


def tree(root: int) -> list[int]:
    """``root`` and all its descendants (Ray's GCS and raylet are the driver's children, workers the raylet's)."""
    children = defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(d))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += children.get(pid, [])
    return out


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(cmd: list[str], log: Path, interval: float = 0.2, echo: str | None = None, check: bool = True) -> dict:
    """Run ``cmd``; its wall time and the peak total PSS of its process tree. ``echo``: also print
    each output line prefixed with it (the stage's own progress lines); ``check=False``: a failed
    command is returned with its exit code instead of ending the benchmark."""
    peak = {"bytes": 0, "processes": 0}
    with open(log, "w") as out:
        t = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if echo is not None else out, stderr=subprocess.STDOUT,
                                text=echo is not None)
        done = threading.Event()

        def sample():
            while not done.is_set():
                pids = tree(proc.pid)
                total = sum(pss_bytes(p) for p in pids)
                if total > peak["bytes"]:
                    peak.update(bytes=total, processes=len(pids))
                done.wait(interval)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        if echo is not None:
            for line in proc.stdout:
                out.write(line)
                print(f"{echo}{line.rstrip()}", flush=True)
        rc = proc.wait()
        done.set()
        th.join()
    if rc != 0 and check:
        sys.exit(f"{' '.join(cmd)} failed ({rc}); see {log}")
    return {"wall_seconds": time.time() - t, "peak_pss_mb": peak["bytes"] / 2**20, "processes_at_peak": peak["processes"],
            **({"returncode": rc} if rc else {})}


def parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.glob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 20_000_000], help="interactions per log")
    ap.add_argument("--items", type=int, default=5000, help="catalog size (the same for every log)")
    ap.add_argument("--epochs", type=int, default=1, help="GPTRec epochs on the smallest log")
    ap.add_argument("--sae-epochs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="extra config override for every stage (repeatable)")
    ap.add_argument("--stages", nargs="+", choices=["extract", "sae"], default=["extract", "sae"],
                    help="the stages to measure (sae needs extract)")
    ap.add_argument("--workdir", default="benchmarks/results/streaming_scale")
    ap.add_argument("--out", default="benchmarks/results/streaming_scale.json")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from saerec.data.synthetic import SyntheticConfig, write_parquet

    saerec = [sys.executable, "-m", "saerec"]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sets = [x for s in args.set for x in ("--set", s)]
    results, model_dir = {}, None
    baseline = measure([sys.executable, "-c", "import time; from saerec.raycluster import ensure_ray; ensure_ray(); "
                        "time.sleep(8)"], work / "idle_ray.log")
    print(f"idle local Ray runtime: {baseline['peak_pss_mb']:,.0f} MB PSS", flush=True)
    for size in sorted(args.sizes):
        tag = f"{size / 1e6:g}M"
        data, run = work / f"data_{tag}", work / f"run_{tag}"
        if not (data / "interactions.parquet").exists():
            t = time.time()
            write_parquet(data, SyntheticConfig(users=max(1, size // MEAN_LEN), items=args.items, seed=1))
            print(f"[{tag}] synthetic log written in {time.time() - t:.0f}s", flush=True)
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run(saerec + ["data", "--run", str(run), "--data-dir", str(data)] + sets, check=True,
                       stdout=subprocess.DEVNULL)
        split = json.loads((run / "data" / "split.json").read_text())
        if model_dir is None:
            t = time.time()
            subprocess.run(saerec + ["train", "--run", str(run), "--epochs", str(args.epochs)] + sets, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            model_dir = run / "recommender"
            print(f"[{tag}] GPTRec trained ({args.epochs} epoch) in {time.time() - t:.0f}s", flush=True)
        else:
            shutil.copytree(model_dir, run / "recommender", ignore=shutil.ignore_patterns("ray"))
        ext = measure(saerec + ["extract", "--run", str(run)] + sets, work / f"extract_{tag}.log")
        rows = {p: parquet_rows(run / "activations" / p) for p in ("sae", "test")}
        # meta.json no longer records the stream's seconds (stage keys must repeat): the stage's wall time
        ext.update(rows=rows, rows_per_second=sum(rows.values()) / ext["wall_seconds"])
        print(f"[{tag}] extract: {sum(rows.values()):,} rows, {ext['rows_per_second']:,.0f} rows/s, "
              f"peak {ext['peak_pss_mb']:,.0f} MB, {ext['wall_seconds']:.0f}s", flush=True)
        results[tag] = {"interactions": split["interactions_total"],
                        "split": {k: split[k] for k in ("rec_interactions", "sae_interactions", "test_interactions",
                                                         "sae_users", "test_users")},
                        "extract": ext}
        if "sae" in args.stages:
            sae = measure(saerec + ["sae", "--run", str(run), "--set", f"sae.epochs={args.sae_epochs}"] + sets,
                          work / f"sae_{tag}.log")
            m = json.loads((run / "sae" / "metrics.json").read_text())
            sae.update(train_activations=m["train_activations"], epochs=args.sae_epochs,
                       activations_per_second=m["train_activations_per_second"], train_seconds=m["train_seconds"],
                       explained_variance=m["explained_variance"])
            print(f"[{tag}] sae: {m['train_activations']:,} activations x {args.sae_epochs} epoch, "
                  f"{sae['activations_per_second']:,.0f} act/s, peak {sae['peak_pss_mb']:,.0f} MB, "
                  f"{sae['wall_seconds']:.0f}s", flush=True)
            results[tag]["sae"] = sae
        shutil.rmtree(run / "activations", ignore_errors=True)       # gigabytes at 20M
    tags = list(results)
    lo, hi = results[tags[0]], results[tags[-1]]
    rate = {"extract": "rows_per_second", "sae": "activations_per_second"}
    report = {
        "benchmark": "streaming_scale", "sizes": tags, "items": args.items, "sets": args.set, "stages": args.stages,
        "idle_ray_pss_mb": baseline["peak_pss_mb"], "results": results,
        "peak_ratio_largest_vs_smallest": {s: hi[s]["peak_pss_mb"] / lo[s]["peak_pss_mb"] for s in args.stages},
        "throughput_ratio_largest_vs_smallest": {s: hi[s][rate[s]] / lo[s][rate[s]] for s in args.stages},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("peak_ratio_largest_vs_smallest", "throughput_ratio_largest_vs_smallest")},
                     indent=2))


if __name__ == "__main__":
    main()
