"""A fuzz run over the JSON API on Ray Serve's HTTP proxy (``saerec serve``'s ``POST /saerec/v1/...``):
random bodies for every route (half well-formed with values in and just outside their ranges, half with
fields replaced by junk or unknown fields, some not JSON at all), counted by HTTP status. The claim:
no 5xx, and every 400 names its field first (``field: what is wrong``). Also the generator the tests
use (tests/test_browse.py and tests/test_serving_contract.py run 200-2,000 of these). Writes JSON.

    python benchmarks/json_api_fuzz.py --run runs/main --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROUTES = ["recommend", "recommend-batch", "features", "feature", "explain"]
WEIGHTS = [10, 2, 5, 4, 1]                  # explain costs ~10 recommends
FIELD_FIRST = re.compile(r"^[A-Za-z_][\w.\[\]-]*: ")


def fuzz_body(rng: random.Random, route: str, history: list[int], n_features: int = 128):
    """A random body for ``route``: half as the route expects (values in and just outside their
    ranges), half with one or two fields replaced by junk or an unknown field, some not JSON at all."""
    junk = [None, True, -1, 0, 2 ** 40, 1.5, "x", "", [], {}, [1, "a"], {"a": 1}, "NaN", "Infinity", 1e308, -0.0]
    steer = {rng.choice(["attribute", "featureId"]): rng.choice(["Sci-Fi", "sci-fi", "Nope", " ", 0, 3, n_features - 1,
                                                                 n_features, -1]),
             "value": rng.choice([rng.uniform(-10, 10), rng.uniform(-200, 200), "NaN"]),
             "mode": rng.choice(["STEERING_MODE_ADD", "STEERING_MODE_SET", "STEERING_MODE_SCALE", 0, 7, "X"]),
             "position": rng.choice(["STEERING_POSITION_ALL", "STEERING_POSITION_LAST", 0, 9])}
    h = rng.sample(history, rng.randint(0, len(history))) + rng.choice([[], [], [10 ** 9], [-3]])
    rec = {"history": h, "k": rng.choice([0, 1, 10, 1000, 1001, -5]),
           "steering": [steer] * rng.choice([0, 1, 1, 2, 17]), "excludeSeen": rng.choice([True, False])}
    if rng.random() < 0.3:
        rec[rng.choice(["allowItems", "denyItems"])] = rng.sample(history, rng.randint(0, len(history)))
    if rng.random() < 0.3:
        rec[rng.choice(["includeAttributes", "excludeAttributes"])] = [rng.choice(["Western", "Polka", " ", "Sci-Fi"])]
    body = {"recommend": rec,
            "recommend-batch": {"requests": [rec] * rng.choice([0, 1, 3, 257])},
            "features": {"attribute": rng.choice(["", "Western", "nope"]), "labelContains": rng.choice(["", "i", "zz"]),
                         "aliveOnly": rng.choice([True, False]), "pageSize": rng.choice([0, 5, 5000]),
                         "pageToken": rng.choice(["", "3", "zz", "-1", "999999"])},
            "feature": {"featureId": rng.choice([0, 5, n_features - 1, n_features, -1, 10 ** 6])},
            "explain": {"history": h, "k": rng.choice([0, 3, 101]), "features": rng.choice([0, 4, 65])}}[route]
    if rng.random() < 0.5:
        for key in rng.sample(list(body) + ["colour"], rng.randint(1, 2)):
            body[key] = rng.choice(junk)
    r = rng.random()
    if r < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    if r < 0.1:
        return json.dumps(body)[: rng.randint(0, 30)].encode()
    return body


def post(port: int, path: str, body, token: str | None = None, host: str = "127.0.0.1") -> tuple[int, dict]:
    """One POST with a JSON (or raw bytes) body: (status, the JSON answer)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    conn.request("POST", path, data, headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    try:
        return r.status, json.loads(raw or b"{}")
    except ValueError:
        return r.status, {"raw": raw[:200].decode(errors="replace")}


def fuzz(port: int, history: list[int], n: int, n_features: int, seed: int = 0,
         routes: list[str] = ROUTES) -> tuple[dict[int, int], list]:
    """``n`` fuzzed requests: counts by HTTP status, and the requests whose answer broke the contract
    (a 5xx, or a 400 whose message does not start with its field)."""
    rng = random.Random(seed)
    weights = [WEIGHTS[ROUTES.index(r)] for r in routes]
    codes: dict[int, int] = {}
    broken = []
    for _ in range(n):
        route = rng.choices(routes, weights=weights)[0]
        body = fuzz_body(rng, route, history, n_features)
        status, answer = post(port, f"/saerec/v1/{route}", body)
        codes[status] = codes.get(status, 0) + 1
        message = answer.get("error", {}).get("message", "") if status != 200 else ""
        if status >= 500 or (status == 400 and not FIELD_FIRST.match(message)):
            broken.append({"route": route, "body": body if isinstance(body, dict) else repr(body),
                           "status": status, "answer": answer})
    return codes, broken


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run with a recommender, SAE and interpretation")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-cpus", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/json_api_fuzz.json")
    args = ap.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from saerec.model.checkpoint import model_index, test_pairs
    from saerec.rundir import RunDir
    from saerec.sae.base import load_sae
    from saerec.serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc
    from serve_latency import free_port, write_report

    run = RunDir(args.run)
    index = model_index(run.recommender)
    history = index.to_ids(test_pairs(run, 1, index=index).inputs[0][-8:]).tolist()
    n_features = load_sae(run.root / "sae")[0].cfg.n_latents
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    http_port = free_port()
    start_grpc(free_port(), http_port)
    serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)
    t = time.perf_counter()
    codes, broken = fuzz(http_port, history, args.requests, n_features, args.seed)
    seconds = time.perf_counter() - t
    serve.shutdown()
    ray.shutdown()
    five = sum(c for s, c in codes.items() if s >= 500)
    print(f"{args.requests} requests in {seconds:.0f}s: statuses {dict(sorted(codes.items()))}, 5xx {five}, "
          f"broken {len(broken)}")
    write_report(args.out, {"benchmark": "json_api_fuzz", "run": str(run.root), "seed": args.seed,
                            "broken": broken[:20],
                            "summary": {"requests": args.requests, "statuses": {str(k): v for k, v in sorted(codes.items())},
                                        "5xx": five, "broken": len(broken), "seconds": round(seconds, 1),
                                        "target_zero_5xx": five == 0}})
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
