"""gRPC serving latency and throughput, side by side with an echo floor behind the same proxy.

One local Ray + Serve with two applications on one gRPC port: ``saerec`` (the Recommender over
``--run``) and ``echo`` (the same servicer, no model: the proxy's own cost). Requests are test-user
histories (dataset item ids), k=10; "steered" adds Sci-Fi +3 (add) to every request. For each
target: latency p50/p99 at concurrency 1 (serial calls), throughput (closed loop) at concurrency 8
and 32. The targets take turns: each measurement is cut into ``--slices`` slices, run round robin.
Then a bounded load (``--load-seconds``, default 60) at concurrency 32 with mixed steering,
counting errors, on each recommender application. The client runs on the same machine (2 cores
here), so its cost is in the numbers.
``--compile`` adds a third application, the Recommender with ``compile: true``, and its two targets.

    python benchmarks/serve_latency.py --run runs/main --seconds 15 --load-seconds 60 [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_loop(stub, make_req, app: str, concurrency: int, seconds: float) -> dict:
    """``concurrency`` threads, each calling back to back for ``seconds``: latencies (s) and errors."""
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = time.perf_counter() + seconds
    md = (("application", app),)

    def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            req = make_req(i)
            t = time.perf_counter()
            try:
                stub.Recommend(req, timeout=30, metadata=md)
                lat[w].append(time.perf_counter() - t)
            except grpc.RpcError:
                errors[w] += 1
            i += concurrency

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"concurrency": concurrency, "latencies": [x for w in lat for x in w], "errors": int(sum(errors)),
            "seconds": time.perf_counter() - t0}


def summarize(parts: list[dict]) -> dict:
    """Merge closed-loop slices of one target: throughput over their total time, latency percentiles."""
    lat = np.array([x for p in parts for x in p["latencies"]]) * 1000
    wall = sum(p["seconds"] for p in parts)
    return {"concurrency": parts[0]["concurrency"], "requests": int(len(lat)),
            "errors": int(sum(p["errors"] for p in parts)), "seconds": wall, "slices": len(parts),
            "throughput_rps": len(lat) / wall,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None}


def write_report(out: str, report: dict) -> None:
    """Write ``report`` (with the machine it ran on) as JSON to ``out`` and print its summary."""
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--seconds", type=float, default=15.0, help="per (target, concurrency) measurement")
    ap.add_argument("--slices", type=int, default=5, help="the targets take turns in this many slices of each measurement")
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--num-cpus", type=int, default=4, help="logical CPUs for the local Ray")
    ap.add_argument("--compile", action="store_true", help="also serve and measure the compiled Recommender")
    ap.add_argument("--out", default="benchmarks/results/serve_latency.json")
    args = ap.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")      # as `saerec serve` does
    import ray
    from ray import serve

    from saerec.model.checkpoint import model_index, test_pairs
    from saerec.rundir import RunDir
    from saerec.serving.client import to_steering
    from saerec.serving.deployment import APP_NAME, ROUTE, Echo, app_builder, start_grpc
    from saerec.v1 import recommender_pb2 as pb
    from saerec.v1 import recommender_pb2_grpc as pb_grpc

    run = RunDir(args.run)
    index = model_index(run.recommender)
    histories = [index.to_ids(h).tolist() for h in test_pairs(run, 200, index=index).inputs]
    steer = [to_steering("Sci-Fi=add:3")]
    mixed = [[], steer, [to_steering("Western=4")], [to_steering("Action=add:2"), to_steering("Drama=add:-2")]]

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    port = free_port()
    start_grpc(port, free_port())
    serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    if args.compile:
        serve.run(app_builder({"run": str(run.root), "compile": True}), name="compiled", route_prefix="/compiled")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.RecommenderStub(channel)

    targets = {
        "echo": ("echo", lambda i: pb.RecommendRequest(history=histories[i % len(histories)], k=10)),
        "recommend": (APP_NAME, lambda i: pb.RecommendRequest(history=histories[i % len(histories)], k=10)),
        "recommend_steered": (APP_NAME, lambda i: pb.RecommendRequest(history=histories[i % len(histories)], k=10,
                                                                      steering=steer)),
    }
    if args.compile:
        targets["compiled"] = ("compiled", targets["recommend"][1])
        targets["compiled_steered"] = ("compiled", targets["recommend_steered"][1])
    for app, make in targets.values():                                  # warm-up
        closed_loop(stub, make, app, 4, 3.0)
    results: dict = {}
    for conc in (1, 8, 32):
        # the targets take turns in --slices slices, so a slow spell of the shared machine hits all
        slices: dict[str, list] = {name: [] for name in targets}
        for _ in range(args.slices):
            for name, (app, make) in targets.items():
                slices[name].append(closed_loop(stub, make, app, conc, args.seconds / args.slices))
        for name in targets:
            r = results.setdefault(name, {})[f"c{conc}"] = summarize(slices[name])
            print(f"{name:<18} c={conc:<3} {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                  f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}", flush=True)
    load = {}
    for app in [APP_NAME] + (["compiled"] if args.compile else []):
        load[app] = summarize([closed_loop(stub, lambda i: pb.RecommendRequest(
            history=histories[i % len(histories)], k=10, steering=mixed[i % len(mixed)]), app, 32, args.load_seconds)])
        print(f"load on {app} (mixed steering) c=32 for {args.load_seconds:.0f}s: {load[app]['requests']} requests, "
              f"{load[app]['errors']} errors, {load[app]['throughput_rps']:.1f} req/s", flush=True)
    channel.close()
    serve.shutdown()
    ray.shutdown()

    echo_p50 = results["echo"]["c1"]["p50_ms"]
    pairs = {"": ("recommend", "recommend_steered"), "compiled_": ("compiled", "compiled_steered")}

    def cost(plain: str, steered: str, c: int) -> float:
        return 1 - results[steered][f"c{c}"]["throughput_rps"] / results[plain][f"c{c}"]["throughput_rps"]

    summary = {
        "p50_c1_ms": {k: v["c1"]["p50_ms"] for k, v in results.items()},
        "p50_c1_vs_echo": {k: v["c1"]["p50_ms"] / echo_p50 for k, v in results.items()},
        "steering_throughput_cost": {f"{pre}c{c}": cost(*pair, c) for pre, pair in pairs.items()
                                     if pair[0] in results for c in (8, 32)},
        "load_errors": {app: r["errors"] for app, r in load.items()},
    }
    summary["targets"] = {
        "p50_c1_le_1.5x_echo": {k: v <= 1.5 for k, v in summary["p50_c1_vs_echo"].items() if k != "echo"},
        "steering_cost_le_10pct": {k: v <= 0.10 for k, v in summary["steering_throughput_cost"].items()},
        "zero_errors_under_load": all(r["errors"] == 0 for r in load.values()),
    }
    write_report(args.out, {"benchmark": "serve_latency", "run": str(run.root), "seconds_per_point": args.seconds,
                            "results": results, "load": load, "summary": summary})


if __name__ == "__main__":
    main()
