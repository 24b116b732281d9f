"""The gRPC recommender: a real Ray Serve application behind Serve's gRPC proxy, real gRPC over
loopback, on the shared synthetic run. Covers steering, validation, deadlines (the client's and the
server's), batching with mixed steering, paging, a killed replica, a hypothesis fuzz run whose answers are
checked, compiled replicas (and their fallback, and a user_config change), the client CLI, the stubs and the
Serve config."""

import concurrent.futures as cf
import contextlib
import math
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import yaml

from saerec.cli import main
from saerec.data.prepare import load_prepared
from saerec.serving.client import RecommenderClient, to_steering
from saerec.v1 import recommender_pb2 as pb
from saerec.v1 import recommender_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(stub, seconds: float = 120) -> None:
    end = time.time() + seconds
    while True:
        try:
            stub.ListFeatures(pb.ListFeaturesRequest(page_size=1), timeout=5)
            return
        except grpc.RpcError:
            if time.time() > end:
                raise
            time.sleep(0.5)


@contextlib.contextmanager
def serving(run):
    """``saerec serve``'s application on ``run`` (gRPC and Serve's HTTP proxy on free ports) and a
    stub that has seen it answer: ``(stub, grpc port, http port)``; Serve is shut down on exit."""
    from ray import serve

    from saerec.serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc

    port, http_port = free_port(), free_port()
    start_grpc(port, http_port)
    try:
        serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RecommenderStub(channel)
            wait_until_serving(stub)
            yield stub, port, http_port
    finally:
        serve.shutdown()


def planted_confidence(j: int) -> float:
    """The label confidence the served copy's hand-made saeeval/features.parquet gives feature j."""
    return 0.25 + (j % 7) / 10


class Served(tuple):
    """``(stub, grpc port, histories, run)``, and ``http_port``: Serve's HTTP proxy (the JSON API)."""

    http_port: int


@pytest.fixture(scope="module")
def served(own_interpreted_run):
    run, _ = own_interpreted_run
    # sae-eval's per-feature table, hand-made so the gRPC answers have a known label confidence (every
    # feature keeps its label: the fuzz oracle compares labels with the session run's catalog)
    n = len(run.read_parquet("interpret/catalog.parquet"))
    (run.root / "saeeval").mkdir(exist_ok=True)
    pd.DataFrame({"feature": np.arange(n), "label_confidence": [planted_confidence(j) for j in range(n)],
                  "labelled": True}).to_parquet(run.root / "saeeval" / "features.parquet")
    prep = load_prepared(run)
    users, inputs, _ = prep.eval_set("test", 40)
    histories = [prep.index.to_ids(h).tolist() for h in inputs]
    with serving(run) as (stub, port, http_port):
        out = Served((stub, port, histories, run))
        out.http_port = http_port
        yield out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def outcomes(futures) -> Counter:
    """Status code names of gRPC futures, once all are done."""
    codes: Counter = Counter()
    for f in futures:
        try:
            f.result()
            codes["OK"] += 1
        except grpc.RpcError as e:
            codes[e.code().name] += 1
    return codes


def genre_count(resp, genre: str) -> int:
    return sum(genre in it.genres for it in resp.items)


def test_steered_request_returns_more_of_the_genre(served):
    stub, _, histories, _ = served
    plain = steered = 0
    for h in histories[:40]:
        base = stub.Recommend(pb.RecommendRequest(history=h, k=10), timeout=10)
        up = stub.Recommend(pb.RecommendRequest(history=h, k=10, steering=[to_steering("Sci-Fi=add:3")]), timeout=10)
        assert len(base.items) == len(up.items) == 10 and base.model_version == up.model_version
        assert [s.label for s in up.applied_steering] == ["Sci-Fi"]
        plain, steered = plain + genre_count(base, "Sci-Fi"), steered + genre_count(up, "Sci-Fi")
    assert steered > plain * 1.1, (plain, steered)


BAD = [
    ("k", pb.RecommendRequest(history=[1, 2], k=1001)),
    ("k", pb.RecommendRequest(history=[1, 2], k=-3)),
    ("steering[0].value", pb.RecommendRequest(history=[1], steering=[pb.Steering(attribute="Action", value=math.nan)])),
    ("steering[0].value", pb.RecommendRequest(history=[1], steering=[pb.Steering(attribute="Action", value=math.inf)])),
    ("steering[0].value", pb.RecommendRequest(history=[1], steering=[pb.Steering(feature_id=3, value=100.5)])),
    ("steering[0].feature_id", pb.RecommendRequest(history=[1], steering=[pb.Steering(feature_id=128, value=1)])),
    ("steering[0].feature_id", pb.RecommendRequest(history=[1], steering=[pb.Steering(feature_id=-1, value=1)])),
    ("steering[1].attribute", pb.RecommendRequest(history=[1], steering=[
        pb.Steering(attribute="Action", value=1), pb.Steering(attribute="Polka", value=1)])),
    ("steering[0].target", pb.RecommendRequest(history=[1], steering=[pb.Steering(value=1)])),
    ("steering[0].mode", pb.RecommendRequest(history=[1], steering=[pb.Steering(attribute="Action", value=1, mode=7)])),
    ("steering", pb.RecommendRequest(history=[1], steering=[pb.Steering(feature_id=i, value=1) for i in range(17)])),
    ("steering[1]", pb.RecommendRequest(history=[1], steering=[pb.Steering(attribute="Action", value=1),
                                                               pb.Steering(attribute="action", value=2)])),
]


def test_bad_inputs_are_invalid_argument_and_the_server_keeps_serving(served):
    stub, _, histories, _ = served
    good = pb.RecommendRequest(history=histories[0], k=5)
    for field, req in BAD:
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value)
        assert err.value.details().startswith(field), (field, err.value.details())
        assert len(stub.Recommend(good, timeout=10).items) == 5
    with pytest.raises(grpc.RpcError) as err:
        stub.Recommend(pb.RecommendRequest(history=[1], steering=[pb.Steering(attribute="Polka", value=1)]), timeout=10)
    assert "ListFeatures" in err.value.details() and "known attributes" in err.value.details()
    for req, field in [(pb.ListFeaturesRequest(page_size=5000), "page_size"), (pb.ListFeaturesRequest(page_token="x"), "page_token"),
                       (pb.ListFeaturesRequest(attribute="Polka"), "attribute")]:
        with pytest.raises(grpc.RpcError) as err:
            stub.ListFeatures(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith(field)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetFeature(pb.GetFeatureRequest(feature_id=999), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "feature_id" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Explain(pb.ExplainRequest(history=[999999]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("history")
    assert len(stub.Recommend(good, timeout=10).items) == 5


def test_fallback_truncation_unknown_ids_and_deadlines(served):
    stub, _, histories, _ = served
    r = stub.Recommend(pb.RecommendRequest(history=[999999, -5]), timeout=10)
    assert r.popularity_fallback and len(r.items) == 10 and list(r.unknown_item_ids) == [999999, -5]
    long = (histories[0] * 10)[:100]
    r = stub.Recommend(pb.RecommendRequest(history=[*long, 999999]), timeout=10)
    assert r.truncated_items == len(long) - 40 and list(r.unknown_item_ids) == [999999] and not r.popularity_fallback
    same = stub.Recommend(pb.RecommendRequest(history=long[-40:]), timeout=10)
    assert [i.item_id for i in r.items] == [i.item_id for i in same.items]           # the most recent 40 are kept
    seen = stub.Recommend(pb.RecommendRequest(history=histories[0], k=50, exclude_seen=False), timeout=10)
    unseen = stub.Recommend(pb.RecommendRequest(history=histories[0], k=50), timeout=10)
    assert not set(histories[0]) & {i.item_id for i in unseen.items}
    assert set(histories[0]) & {i.item_id for i in seen.items}
    with pytest.raises(grpc.RpcError) as err:          # expires in the client library, before the server
        stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=10).items) == 10


def test_server_drops_requests_past_their_deadline_and_keeps_serving(served):
    """The server's side of a deadline: a burst of heavy requests (the largest history a request may
    carry) with a deadline far above the round trip but below the time the burst takes. The callers get
    DEADLINE_EXCEEDED, and the server, which computes every request of the same burst without a
    deadline, computes few of them: it saw the deadline pass (Serve cancels the request in the proxy
    and the replica) instead of working for callers that are gone. The next call is answered."""
    from ray import serve

    from saerec.serving.deployment import APP_NAME
    from saerec.serving.service import MAX_HISTORY_IDS

    stub, _, histories, _ = served
    handle = serve.get_deployment_handle("Recommender", APP_NAME)

    def computed() -> int:
        """Requests the replica has run a forward pass for, once no more are under way."""
        last, end = -1, time.time() + 30
        while time.time() < end:
            now = sum(size * c for size, c in handle.batch_sizes.remote().result().items())
            if now == last:
                return now
            last = now
            time.sleep(0.3)
        raise AssertionError("the replica kept computing for 30 s")

    light = pb.RecommendRequest(history=histories[0][:1], k=1)
    floor = sorted(timed(lambda: stub.Recommend(light, timeout=10)) for _ in range(15))[7]   # median round trip
    heavy = pb.RecommendRequest(history=np.resize(histories[0], MAX_HISTORY_IDS).tolist(), k=1000)
    n = 48                                   # under max_ongoing_requests: all may wait in the replica at once

    def burst(timeout: float) -> tuple[Counter, int, float]:
        before, start = computed(), time.perf_counter()
        codes = outcomes([stub.Recommend.future(heavy, timeout=timeout) for _ in range(n)])
        took = time.perf_counter() - start
        ok = stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=30)  # right after: still serving
        assert len(ok.items) == 10
        return codes, computed() - before - 1, took

    codes, done, took = burst(60)
    assert codes == {"OK": n} and done == n, (codes, done)           # no deadline: all computed
    deadline = took / 8
    assert deadline > 5 * floor, (deadline, floor)                    # the requests reach the server in time
    codes, done, _ = burst(deadline)
    assert codes["DEADLINE_EXCEEDED"] >= n // 2, codes
    assert done <= n // 2, (done, codes, deadline, took)               # the server dropped the expired ones


def test_concurrent_requests_with_different_steering_are_batched_correctly(served):
    stub, _, histories, _ = served
    edits = [[], ["Sci-Fi=add:3"], ["Western=5", "Action=add:-2"], ["7=scale:0@all"], ["Fantasy=add:4"]]
    reqs = [pb.RecommendRequest(history=histories[i % len(histories)], k=10,
                                steering=[to_steering(e) for e in edits[i % len(edits)]]) for i in range(60)]
    from ray import serve

    from saerec.serving.deployment import APP_NAME

    handle = serve.get_deployment_handle("Recommender", APP_NAME)
    sizes = lambda: Counter(handle.batch_sizes.remote().result())   # noqa: E731
    before = sizes()
    alone = [stub.Recommend(r, timeout=10) for r in reqs]
    serial = sizes() - before
    assert set(serial) == {1} and serial[1] == len(reqs)            # one at a time: never queued
    with cf.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(lambda r: stub.Recommend(r, timeout=30), reqs))
    passes = sizes() - before - serial
    assert sum(n * c for n, c in passes.items()) == len(reqs) and max(passes) > 1, passes
    for a, b in zip(alone, together):
        assert [i.item_id for i in a.items] == [i.item_id for i in b.items]


def test_catalog_and_explain_rpcs(served):
    stub, _, histories, _ = served
    whole = stub.ListFeatures(pb.ListFeaturesRequest(page_size=1000, alive_only=True), timeout=10)
    assert not whole.next_page_token and len(whole.features) == whole.total > 10
    paged, token = [], ""
    for _ in range(whole.total // 7 + 1):                     # page to the end: at most ceil(total / 7) pages
        page = stub.ListFeatures(pb.ListFeaturesRequest(page_size=7, alive_only=True, page_token=token), timeout=10)
        assert page.total == whole.total and (len(page.features) == 7 or not page.next_page_token)
        paged += [f.feature_id for f in page.features]
        token = page.next_page_token
        if not token:
            break
    assert not token and paged == [f.feature_id for f in whole.features]    # each feature once, in order
    sci = stub.ListFeatures(pb.ListFeaturesRequest(attribute="sci-fi"), timeout=10)
    assert sci.total >= 1 and all(f.label == "Sci-Fi" for f in sci.features)
    assert any(f.top_feature_of_label for f in sci.features)
    f = stub.GetFeature(pb.GetFeatureRequest(feature_id=sci.features[0].feature_id), timeout=10).feature
    assert f.label == "Sci-Fi" and len(f.promoted_items) == 10 and f.top_items
    # label confidence (sae-eval's, read from the run) travels on every catalog entry and explanation
    assert all(f.HasField("label_confidence") for f in whole.features)
    assert [f.label_confidence for f in whole.features] == pytest.approx(
        [planted_confidence(f.feature_id) for f in whole.features])
    ex = stub.Explain(pb.ExplainRequest(history=histories[0], k=3, features=4), timeout=10)
    assert len(ex.items) == 3 and 1 <= len(ex.features) <= 4
    assert [f.label_confidence for f in ex.features] == pytest.approx(
        [planted_confidence(f.feature_id) for f in ex.features])
    assert all(len(it.contributions) == len(ex.features) for it in ex.items)


def test_client_cli(served, capsys):
    _, port, histories, _ = served
    addr = f"127.0.0.1:{port}"
    hist = ",".join(map(str, histories[0][-10:]))
    assert main(["client", "recommend", "--address", addr, "--history", hist + ",999999", "--edit", "Sci-Fi=add:3", "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "steering: feature" in out and "999999" in out and out.count("\n") >= 7
    assert main(["client", "features", "--address", addr, "--attribute", "Western", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    first = int(out.split()[0].lstrip("#"))
    assert "Western" in out and f"confidence {planted_confidence(first):.3f}" in out.splitlines()[0]
    assert main(["client", "explain", "--address", addr, "--history", hist, "--k", "3"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"confidence {planted_confidence(int(first.split()[0].lstrip('#'))):.3f}" in first
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--edit", "Polka=1"]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--edit", "Action=nan"]) == 2


def check_answer(req, resp, items: set[int], max_len: int, catalog) -> None:
    """What an OK Recommend answer must be, from the request and the run's tables alone (the fuzz oracle):
    unknown ids listed, distinct known items in score order, k of them (fewer only when the unseen items
    run out), none from the history when seen items are excluded, and each edit reported as resolved."""
    k, history = req.k or 10, list(req.history)
    kept = [i for i in history if i in items]
    assert list(resp.unknown_item_ids) == [i for i in history if i not in items]
    got, scores = [it.item_id for it in resp.items], [it.score for it in resp.items]
    assert len(set(got)) == len(got) and set(got) <= items
    assert all(map(math.isfinite, scores)) and scores == sorted(scores, reverse=True)
    if not kept:                                           # nothing the model knows: popular items, unsteered
        assert resp.popularity_fallback and len(got) == min(k, len(items)) and not resp.applied_steering
        return
    assert not resp.popularity_fallback and resp.truncated_items == max(0, len(kept) - max_len)
    if req.exclude_seen if req.HasField("exclude_seen") else True:
        assert not set(got) & set(history)                # the whole history, also the part the model drops
        assert len(got) == min(k, len(items - set(kept)))
    else:
        assert len(got) == min(k, len(items))
    assert len(resp.applied_steering) == len(req.steering)
    for s, a in zip(req.steering, resp.applied_steering):
        if s.WhichOneof("target") == "feature_id":
            assert (a.feature_id, a.label) == (s.feature_id, catalog.label(s.feature_id))
        else:
            assert (a.feature_id, a.label) == (catalog.feature_for(s.attribute), catalog.canonical(s.attribute))
        assert (a.value, a.mode, a.position) == (s.value, s.mode or pb.STEERING_MODE_SET,
                                                 s.position or pb.STEERING_POSITION_LAST)


def test_fuzzed_requests_never_crash_and_answers_are_valid(served, interpreted_run):
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st

    from saerec.steer.catalog import FeatureCatalog

    stub, _, histories, run = served
    items = set(run.read_parquet("recommender/items.parquet")["item_id"].tolist())
    catalog, max_len = FeatureCatalog.load(run), interpreted_run[1].model.max_len
    known = sorted({i for h in histories for i in h})
    ids = st.one_of(st.sampled_from(known), st.integers(-2**63, 2**63 - 1), st.integers(0, 2000))
    history = st.one_of(st.lists(ids, max_size=60),
                        st.lists(st.sampled_from(known), min_size=max_len - 5, max_size=2 * max_len))  # truncated
    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-12, 12))
    target = st.one_of(st.builds(lambda j: {"feature_id": j}, st.integers(-2**31, 2**31 - 1)),
                       st.builds(lambda j: {"feature_id": j}, st.integers(0, 130)),
                       st.builds(lambda a: {"attribute": a}, st.sampled_from(["Action", "sci-fi", "Western", "Drama"])),
                       st.builds(lambda a: {"attribute": a}, st.text(max_size=20)),
                       st.just({}))
    steering = st.builds(lambda t, v, m, p: pb.Steering(value=v, mode=m, position=p, **t),
                         target, values, st.integers(0, 5), st.integers(0, 4))
    request = st.builds(lambda h, k, s, e: pb.RecommendRequest(history=h, k=k, steering=s, **e),
                        history, st.integers(-5, 1100), st.lists(steering, max_size=18),
                        st.sampled_from([{}, {"exclude_seen": True}, {"exclude_seen": False}]))
    sent: dict = {"n": 0, "codes": {}}
    deadline = time.time() + 300
    window: list = []                  # requests in flight: up to 32 at once, so Serve batches them

    def settle(block: bool) -> None:
        while window and (block or window[0][0].done()):
            fut, req = window.pop(0)
            try:
                resp, code = fut.result(), grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, e.details(), req)
            else:
                try:
                    check_answer(req, resp, items, max_len, catalog)
                except AssertionError as e:
                    raise AssertionError(f"{e}\nrequest:\n{req}\nanswer:\n{resp}") from None
            sent["codes"][code.name] = sent["codes"].get(code.name, 0) + 1
            sent["n"] += 1

    @settings(max_examples=10_000, deadline=None, phases=[Phase.generate], derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(request)
    def one(req):
        window.append((stub.Recommend.future(req, timeout=60), req))
        settle(block=len(window) >= 32)      # a failure names the request that caused it
        assert time.time() < deadline, "fuzz run over its time bound"

    one()
    settle(block=True)
    assert sent["n"] >= 10_000 and set(sent["codes"]) == {"OK", "INVALID_ARGUMENT"}, sent
    assert len(stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=10).items) == 10


def test_killed_replica_recovers(served):
    from ray import serve

    from saerec.serving.deployment import APP_NAME

    stub, _, histories, _ = served
    req = pb.RecommendRequest(history=histories[0], k=10)
    handle = serve.get_deployment_handle("Recommender", APP_NAME)
    pid = handle.pid.remote().result()
    os.kill(pid, signal.SIGKILL)
    failures, end = 0, time.time() + 120
    while True:                                             # bounded retry loop while Serve restarts it
        try:
            stub.Recommend(req, timeout=5)
            break
        except grpc.RpcError:
            failures += 1
            assert time.time() < end, "the service did not recover within 120 s"
            time.sleep(0.5)
    assert handle.pid.remote().result() != pid
    assert all(len(stub.Recommend(req, timeout=10).items) == 10 for _ in range(20))   # and keeps serving


def test_client_class(served):
    _, port, histories, _ = served
    with RecommenderClient(f"127.0.0.1:{port}") as c:
        r = c.recommend(histories[1], k=4, steering=["Children=add:2"])
        assert len(r.items) == 4 and r.applied_steering[0].label == "Children"
        assert c.get_feature(r.applied_steering[0].feature_id).label == "Children"


def assert_same_lists(got, want, k: int, tol: float = 1e-4) -> None:
    """``got`` (k items) ranks as ``want`` (an eager answer with more than k): the same item at each rank with
    a score within ``tol``, except that items whose eager scores tie within ``tol`` may trade places (fused
    kernels round differently from eager ones)."""
    eager = {it.item_id: it.score for it in want.items}
    assert len(got.items) == k < len(want.items)
    for it, w in zip(got.items, want.items):
        assert abs(it.score - w.score) <= tol, (it, w)
        assert it.item_id == w.item_id or abs(eager.get(it.item_id, math.inf) - w.score) <= tol, (it, w)
    assert got.applied_steering == want.applied_steering


def config_app(name: str, run, env: dict, **user_config) -> dict:
    """serve/config.yaml's application (compile: true) under another name and route, serving ``run``,
    with ``env`` in its runtime_env and ``user_config`` over the file's. One replica (its pid and counters
    are the application's) on half a CPU, as the test cluster allows."""
    app = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())["applications"][0]
    assert app["args"]["compile"] is True
    dep = app["deployments"][0]
    del dep["autoscaling_config"]
    dep.update(num_replicas=1, ray_actor_options={"num_cpus": 0.5}, user_config={**dep["user_config"], **user_config})
    return {**app, "name": name, "route_prefix": f"/{name}", "args": {**app["args"], "run": str(run.root)},
            "runtime_env": {"env_vars": env}}


def deploy(apps: list[dict], seconds: float = 900) -> None:
    """Apply these applications as `serve run serve/config.yaml` does (the declarative path, where a
    user_config change is applied to running replicas) and wait until they run."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema(applications=apps))
    end = time.time() + seconds
    while True:
        status = serve.status().applications
        states = {a["name"]: status[a["name"]].status if a["name"] in status else "" for a in apps}
        if all(s == "RUNNING" for s in states.values()):
            return
        assert "DEPLOY_FAILED" not in states.values(), {n: status[n].message for n in states if n in status}
        assert time.time() < end, states
        time.sleep(1)


def test_compiled_replicas_behind_serve(served, tmp_path):
    """serve/config.yaml deploys with compile: true. A replica compiles its scoring pass at load
    (AOTInductor) and answers as the eager model does, steered or not. One that cannot compile (no C++
    compiler: CXX names none) serves the traced blocks instead and answers the same. A user_config change
    reaches the running compiled replica: no restart, no recompile, the new batch size in force."""
    from ray import serve

    from saerec.serving.service import RecommenderService

    _, port, histories, run = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.RecommenderStub(channel)

    def ask(app: str, reqs: list, threads: int = 1) -> list:
        call = lambda r: stub.Recommend(r, timeout=30, metadata=(("application", app),))   # noqa: E731
        with cf.ThreadPoolExecutor(threads) as ex:
            return list(ex.map(call, reqs))

    edits = [[], ["Sci-Fi=add:3"], ["Western=5", "Action=add:-2"], ["7=scale:0@all"]]     # the last runs eagerly
    reqs = [pb.RecommendRequest(history=h, k=10, steering=[to_steering(e) for e in edits[i % len(edits)]])
            for i, h in enumerate(histories[:16])]
    eager = RecommenderService(run)             # in this process: no trace, no compile
    want = [eager.recommend(pb.RecommendRequest(history=r.history, k=15, steering=r.steering)) for r in reqs]
    cache = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}      # nothing compiled before helps
    compiled_app = lambda batch: config_app("compiled", run, cache, max_batch_size=batch)   # noqa: E731
    nocxx_app = config_app("nocxx", run, {**cache, "CXX": str(tmp_path / "no-such-compiler")})
    try:
        start = time.perf_counter()
        deploy([compiled_app(1), nocxx_app])
        loaded = time.perf_counter() - start
        compiled, fallback = (serve.get_deployment_handle("Recommender", a) for a in ("compiled", "nocxx"))
        assert compiled.scoring.remote().result() == "compiled"
        assert fallback.scoring.remote().result() == "traced"
        for app in ("compiled", "nocxx"):
            for got, w in zip(ask(app, reqs), want):
                assert_same_lists(got, w, 10)

        # user_config: max_batch_size 1, then 32, applied to the running compiled replica
        sizes = lambda: Counter(compiled.batch_sizes.remote().result())   # noqa: E731
        pid, before = compiled.pid.remote().result(), sizes()
        assert compiled.batching.remote().result()["max_batch_size"] == 1
        ask("compiled", reqs * 4, threads=16)
        assert set(sizes() - before) == {1}, sizes() - before             # concurrent, yet one request a pass
        start = time.perf_counter()
        deploy([compiled_app(32)])                                        # and nocxx goes
        end = time.time() + 120
        while compiled.batching.remote().result()["max_batch_size"] != 32:
            assert time.time() < end, "user_config not applied within 120 s"
            time.sleep(0.5)
        reconfigured = time.perf_counter() - start
        assert compiled.pid.remote().result() == pid and compiled.scoring.remote().result() == "compiled"
        assert reconfigured < loaded / 2, (reconfigured, loaded)          # in place: not compiled again
        before = sizes()
        for got, w in zip(ask("compiled", reqs * 4, threads=16), want * 4):
            assert_same_lists(got, w, 10)
        assert max(sizes() - before) > 1, sizes() - before
    finally:
        channel.close()
        for app in ("compiled", "nocxx"):
            serve.delete(app)


def test_stubs_are_up_to_date(tmp_path):
    from saerec.serving.protogen import OUTPUTS, generate

    for fresh in generate(tmp_path):
        committed = REPO / "saerec" / "v1" / fresh.name
        assert fresh.read_bytes() == committed.read_bytes(), \
            f"{committed} is stale: run `python -m saerec.serving.protogen`"
    assert len(OUTPUTS) == 3


def test_proto_passes_buf_lint():
    from conftest import require_tool

    buf = require_tool("buf", ".ci/run installs it from the npm registry")
    r = subprocess.run([buf, "lint"], cwd=REPO / "proto", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_serve_config_validates_against_ray_serve_schema():
    from ray.serve.schema import ServeDeploySchema

    cfg = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(cfg)
    app = schema.applications[0]
    assert app.import_path == "saerec.serving.deployment:app_builder"
    assert cfg["grpc_options"]["grpc_servicer_functions"] == ["saerec.v1.recommender_pb2_grpc.add_RecommenderServicer_to_server",
                                                         "saerec.serving.health.add_HealthServicer_to_server"]
    assert cfg["grpc_options"]["port"] == 9000
    dep = app.deployments[0]
    assert dep.name == "Recommender" and dep.autoscaling_config and dep.ray_actor_options.num_cpus > 0
