"""Where a served request's time goes at concurrency 1: the proxy, the answer's size, the replica's work.

``serve_latency.py`` compares the recommender with an echo floor; this splits the difference. One
local Ray + Serve with three applications behind the same gRPC proxy, called serially in
round-robin slices:

- ``echo``: the benchmark floor (empty answer);
- ``canned``: the same servicer answering a full-size recommendation computed once (10 items with
  titles and genres): the proxy's cost of carrying a real answer;
- ``timed``: the recommender's own request path (``RecommenderService`` with traced blocks, as a
  replica runs it), timing each request inside the replica (wall and thread CPU), then running the
  same request once more at once: the second run finds the caches warm.

The same service is also timed in this process, back to back (warm). The gap between the replica's
first run and its repeat is what a serial request pays for finding the replica's caches cold after
the proxy and the client ran. The CPU time of the proxy and replica processes over each target's
slices (from /proc, Linux) gives each one's CPU cost per request, the echo's included.

    python benchmarks/serve_breakdown.py --run runs/main --seconds 30
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import closed_loop, free_port, summarize, write_report  # noqa: E402


def process_cpu() -> dict[str, float]:
    """CPU seconds so far of Serve's proxy and replica processes, by process title (Linux /proc)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace").strip()
            with open(d + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if title.startswith(("ray::ProxyActor", "ray::ServeReplica")):
            out[title] = out.get(title, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--seconds", type=float, default=30.0, help="per target, cut into --slices slices")
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--num-cpus", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/serve_breakdown.json")
    args = ap.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    import grpc
    import ray
    import torch
    from ray import serve

    from saerec.model.traced import trace_blocks
    from saerec.model.checkpoint import model_index, test_pairs
    from saerec.rundir import RunDir
    from saerec.serving.deployment import QUIET, Echo, start_grpc
    from saerec.serving.service import RecommenderService
    from saerec.v1 import recommender_pb2 as pb
    from saerec.v1 import recommender_pb2_grpc as pb_grpc

    @serve.deployment(name="Timed", ray_actor_options={"num_cpus": 0.5}, logging_config=QUIET)
    class Timed:
        """The replica's request path (as ``Recommender`` runs a lone request), timed twice."""

        def __init__(self, run: str, canned: bool = False):
            torch.set_num_threads(1)
            self.service = RecommenderService(run)
            trace_blocks(self.service.steerer.model)
            self.canned, self.answer, self.times = canned, None, []

        async def Recommend(self, request, grpc_context=None):
            if self.canned and self.answer is not None:
                return self.answer
            t, c = time.perf_counter(), time.thread_time()
            self.answer = self.service.recommend(request)
            t1, c1 = time.perf_counter(), time.thread_time()
            self.service.recommend(request)
            self.times.append((t1 - t, c1 - c, time.perf_counter() - t1, time.thread_time() - c1))
            return self.answer

        def take_times(self) -> list:
            out, self.times = self.times, []
            return out

    run = RunDir(args.run)
    index = model_index(run.recommender)
    histories = [index.to_ids(h).tolist() for h in test_pairs(run, 200, index=index).inputs]

    def make(i: int):
        return pb.RecommendRequest(history=histories[i % len(histories)], k=10)

    # in process, back to back: the same call with warm caches
    torch.set_num_threads(1)
    local = RecommenderService(run.root)
    trace_blocks(local.steerer.model)
    requests = [make(i) for i in range(len(histories))]     # built before timing: the replica gets them parsed
    for r in requests[:50]:
        local.recommend(r)
    in_process = []
    for r in requests:
        t = time.perf_counter()
        local.recommend(r)
        in_process.append(time.perf_counter() - t)

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    port = free_port()
    start_grpc(port, free_port())
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    serve.run(Timed.options(name="Canned").bind(str(run.root), True), name="canned", route_prefix="/canned")
    timed = serve.run(Timed.bind(str(run.root)), name="timed", route_prefix="/timed")
    stub = pb_grpc.RecommenderStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    apps = ("echo", "canned", "timed")
    for app in apps:                                                   # warm-up
        closed_loop(stub, make, app, 1, 2.0)
    timed.take_times.remote().result()
    slices: dict[str, list] = {a: [] for a in apps}
    cpu: dict[str, dict[str, float]] = {a: {} for a in apps}       # CPU seconds per process during each target
    for _ in range(args.slices):
        for app in apps:
            before = process_cpu()
            slices[app].append(closed_loop(stub, make, app, 1, args.seconds / args.slices))
            for title, sec in process_cpu().items():
                cpu[app][title] = cpu[app].get(title, 0.0) + sec - before.get(title, 0.0)
    times = np.array(timed.take_times.remote().result()) * 1000
    serve.shutdown()
    ray.shutdown()

    res = {a: summarize(slices[a]) for a in apps}
    med = np.median(times, axis=0)
    replica = {"first_wall_ms": float(med[0]), "first_cpu_ms": float(med[1]), "repeat_wall_ms": float(med[2]),
               "repeat_cpu_ms": float(med[3]), "requests": len(times)}
    echo = res["echo"]["p50_ms"]
    summary = {
        "p50_ms": {a: res[a]["p50_ms"] for a in apps},
        "answer_size_ms": res["canned"]["p50_ms"] - echo,
        # CPU ms per request of the proxy and of the replica serving it (the timed app runs each request twice)
        "cpu_ms_per_request": {a: {"proxy": 1000 * sum(v for t, v in cpu[a].items() if "ProxyActor" in t) / res[a]["requests"],
                                   "replica": 1000 * sum(v for t, v in cpu[a].items() if t.startswith("ray::ServeReplica:" + a + ":"))
                                   / res[a]["requests"]} for a in apps},
        "replica_ms": replica,
        "in_process_warm_ms": {"median": float(np.median(in_process) * 1000), "requests": len(in_process)},
        "cold_over_warm_in_replica": float(med[0] / med[2]),
    }
    for a in apps:
        print(f"{a:<7} c=1 p50 {res[a]['p50_ms']:6.2f} ms  p99 {res[a]['p99_ms']:6.2f} ms  ({res[a]['requests']} calls)")
    print(f"in the replica (median of {replica['requests']}): first run {med[0]:.2f} ms wall / {med[1]:.2f} ms CPU, "
          f"repeat {med[2]:.2f} / {med[3]:.2f}; in process, warm: {summary['in_process_warm_ms']['median']:.2f} ms")
    for a, c in summary["cpu_ms_per_request"].items():
        print(f"{a:<7} CPU per request: proxy {c['proxy']:.2f} ms, replica {c['replica']:.2f} ms")
    write_report(args.out, {"benchmark": "serve_breakdown", "run": str(run.root), "seconds_per_target": args.seconds,
                            "results": res, "summary": summary})


if __name__ == "__main__":
    main()
