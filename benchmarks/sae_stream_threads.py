"""The SAE stage's stream on few cores: Ray Data into a training step, by torch thread count.

Why: on 2 cores the SAE stage at 20M interactions trained at a quarter of its 2M rate. Ray Data
alone and the step alone were both fast; together, a worker with as many OpenMP threads as cores
shared them with the read tasks and the split coordinator, and its threads waited on each other at
every parallel op. This measures the three parts on a run's activations, each in one Ray task
holding one CPU as the Ray Train worker does:

- ``read``: ``streaming_split(1, equal=True)`` (what Ray Train's DataConfig does) into a consumer
  that only converts batches to tensors;
- ``memory``: the SAE step (default SAE config) over rows already in memory, per thread count;
- ``stream``: the read and the step together (``saerec.sae.ray_train.minibatches``), per thread count.

Rates are rows/s over ``--rows`` rows. Writes JSON.

    python benchmarks/sae_stream_threads.py --run runs/ps/run_1 --rows 300000 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run directory with activations/sae")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="benchmarks/results/sae_stream_threads.json")
    args = ap.parse_args()

    import ray
    import torch

    from saerec.raycluster import ensure_ray
    from saerec.sae.base import SAEConfig, build_sae
    from saerec.sae.ray_train import activation_dataset, minibatches, norm_and_init
    from saerec.sae.trainer import make_optimizer, train_steps

    folder = Path(args.run, "activations", "sae")
    norm, init, n_rows, d = norm_and_init(folder, "global")
    cfg = asdict(SAEConfig())

    def limited(batches, rows):
        seen = 0
        for b in batches:
            yield b
            seen += len(b)
            if seen >= rows:
                return

    @ray.remote(num_cpus=1)
    def measure(kind: str, it, threads: int) -> float:
        torch.set_num_threads(threads)
        c = SAEConfig(**cfg)
        if kind == "read":
            t, seen = time.perf_counter(), 0
            for b in limited((b["activation"] for b in it.iter_torch_batches(batch_size=c.batch_size * 64,
                                                                              dtypes=torch.float32)), args.rows):
                seen += len(b)
            return seen / (time.perf_counter() - t)
        sae = build_sae(d, c)
        sae.init_from_sample(torch.tensor(init))
        opt = make_optimizer(sae)
        if kind == "memory":
            x = torch.cat(list(limited((b["activation"] for b in it.iter_torch_batches(
                batch_size=c.batch_size * 64, dtypes=torch.float32)), args.rows)))
            batches = list(norm(x).split(c.batch_size))
        else:
            batches = limited(minibatches(it, c, 0, norm), args.rows)
        t = time.perf_counter()
        rows = train_steps(sae, opt, batches)["rows"]
        return rows / (time.perf_counter() - t)

    results = []
    for kind, threads in [("read", 1), *[(k, t) for t in args.threads for k in ("memory", "stream")]]:
        # a fresh runtime per part: a stopped consumer leaves the split's read tasks running, and
        # they would share the cores with the next part
        ensure_ray()
        it = activation_dataset(str(folder)).streaming_split(1, equal=True)[0]
        rate = ray.get(measure.remote(kind, it, threads))
        del it
        ray.shutdown()
        results.append({"part": kind, "threads": threads, "rows_per_second": rate})
        print(f"{kind:<7} {threads} thread(s): {rate:,.0f} rows/s", flush=True)
    report = {"benchmark": "sae_stream_threads", "run": args.run, "activations": n_rows, "rows": args.rows,
              "results": results, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                              "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
