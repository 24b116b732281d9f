"""What the production contract costs, measured side by side in one run on one local Ray + Serve:

- **rules**: the same steered request (test-user histories, k=10, Sci-Fi +3) without and with
  business rules (an allow list of half the catalogue, a deny list of 50 items, one excluded
  attribute), latency p50 at concurrency 1 and throughput at concurrency 8. The two take turns
  in ``--slices`` slices. Target: rules cost <= 1.1x.
- **batch**: 32 users (each its own steering) as one ``RecommendBatch`` call against 32 serial
  ``Recommend`` calls, in alternating rounds: users per second. Target: >= 3x.

    python benchmarks/serve_contract.py --run runs/main --seconds 15 --rounds 30
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_latency import closed_loop, free_port, summarize, write_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--seconds", type=float, default=15.0, help="per (target, concurrency) measurement")
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=30, help="batch vs serial rounds (32 users each)")
    ap.add_argument("--num-cpus", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/serve_contract.json")
    args = ap.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray
    from ray import serve

    from saerec.model.checkpoint import model_index, test_pairs
    from saerec.rundir import RunDir
    from saerec.serving.client import to_steering
    from saerec.serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc
    from saerec.v1 import recommender_pb2 as pb
    from saerec.v1 import recommender_pb2_grpc as pb_grpc

    run = RunDir(args.run)
    index = model_index(run.recommender)
    histories = [index.to_ids(h).tolist() for h in test_pairs(run, 200, index=index).inputs]
    items = run.read_parquet("recommender/items.parquet")
    ids = items["item_id"].tolist()
    genres = [c for c in ("Drama", "Comedy", "Action", "Horror", "Children", "Western") if c in items.columns]
    rules = dict(allow_items=ids[::2], deny_items=ids[1:100:2], include_attributes=[], exclude_attributes=genres[-1:])
    steer = [to_steering("Sci-Fi=add:3")]
    mixed = [[], steer, [to_steering("Action=add:2")], [to_steering("Western=add:-2"), to_steering("Sci-Fi=add:2")]]

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    port = free_port()
    start_grpc(port, free_port())
    serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.RecommenderStub(channel)
    md = (("application", APP_NAME),)

    targets = {
        "steered": lambda i: pb.RecommendRequest(history=histories[i % len(histories)], k=10, steering=steer),
        "steered_rules": lambda i: pb.RecommendRequest(history=histories[i % len(histories)], k=10, steering=steer,
                                                       **rules),
    }
    for make in targets.values():
        closed_loop(stub, make, APP_NAME, 4, 3.0)                        # warm-up
    results: dict = {}
    for conc in (1, 8):
        slices: dict[str, list] = {name: [] for name in targets}
        for _ in range(args.slices):
            for name, make in targets.items():
                slices[name].append(closed_loop(stub, make, APP_NAME, conc, args.seconds / args.slices))
        for name in targets:
            r = results.setdefault(name, {})[f"c{conc}"] = summarize(slices[name])
            print(f"{name:<14} c={conc:<2} {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                  f"errors {r['errors']}", flush=True)

    def users(r: int) -> list:
        return [pb.RecommendRequest(history=histories[(r * 32 + j) % len(histories)], k=10, steering=mixed[j % 4])
                for j in range(32)]

    serial_s, batch_s = [], []
    for r in range(args.rounds + 2):                                     # two warm-up rounds
        reqs = users(r)
        for which in ((0, 1) if r % 2 else (1, 0)):                     # alternate which goes first
            t = time.perf_counter()
            if which == 0:
                for q in reqs:
                    stub.Recommend(q, timeout=30, metadata=md)
            else:
                res = stub.RecommendBatch(pb.RecommendBatchRequest(requests=reqs), timeout=60, metadata=md)
                bad = [x.error.message for x in res.results if x.WhichOneof("result") != "response"]
                assert not bad, bad
            (serial_s if which == 0 else batch_s).append(time.perf_counter() - t)
    serial_s, batch_s = serial_s[2:], batch_s[2:]
    channel.close()
    serve.shutdown()
    ray.shutdown()

    batch = {"users_per_call": 32, "rounds": args.rounds,
             "serial_users_per_s": 32 / float(np.median(serial_s)), "batch_users_per_s": 32 / float(np.median(batch_s)),
             "serial_median_s": float(np.median(serial_s)), "batch_median_s": float(np.median(batch_s))}
    batch["speedup"] = batch["batch_users_per_s"] / batch["serial_users_per_s"]
    print(f"batch of 32: {batch['batch_users_per_s']:.0f} users/s vs serial {batch['serial_users_per_s']:.0f} "
          f"({batch['speedup']:.2f}x)", flush=True)
    summary = {
        "rules_p50_c1_ratio": results["steered_rules"]["c1"]["p50_ms"] / results["steered"]["c1"]["p50_ms"],
        "rules_throughput_c8_ratio": results["steered"]["c8"]["throughput_rps"] / results["steered_rules"]["c8"]["throughput_rps"],
        "batch32_speedup": batch["speedup"],
    }
    summary["targets"] = {"rules_le_1.1x": max(summary["rules_p50_c1_ratio"], summary["rules_throughput_c8_ratio"]) <= 1.1,
                          "batch32_ge_3x": summary["batch32_speedup"] >= 3.0}
    write_report(args.out, {"benchmark": "serve_contract", "run": str(run.root), "seconds_per_point": args.seconds,
                            "rules": {k: len(v) if isinstance(v, list) else v for k, v in rules.items()},
                            "results": results, "batch": batch, "summary": summary})


if __name__ == "__main__":
    main()
