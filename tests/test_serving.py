"""The gRPC recommender: a real Ray Serve application behind Serve's gRPC proxy, real gRPC over
loopback, on the shared synthetic run. Covers steering, validation, deadlines, batching with mixed
steering, a killed replica, a hypothesis fuzz run, the client CLI, the stubs and the Serve config."""

import concurrent.futures as cf
import math
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import grpc
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


@pytest.fixture(scope="module")
def served(interpreted_run):
    from ray import serve

    from saerec.serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc

    run, _ = interpreted_run
    port = free_port()
    start_grpc(port, free_port())
    serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.RecommenderStub(channel)
    wait_until_serving(stub)
    prep = load_prepared(run)
    users, inputs, _ = prep.eval_set("test", 40)
    histories = [prep.index.to_ids(h).tolist() for h in inputs]
    yield stub, port, histories, run
    channel.close()
    serve.shutdown()


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
    with pytest.raises(grpc.RpcError) as err:
        stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=10).items) == 10


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
    page = stub.ListFeatures(pb.ListFeaturesRequest(page_size=10, alive_only=True), timeout=10)
    assert len(page.features) == 10 and page.next_page_token and page.total > 10
    nxt = stub.ListFeatures(pb.ListFeaturesRequest(page_size=10, alive_only=True, page_token=page.next_page_token), timeout=10)
    assert not {f.feature_id for f in page.features} & {f.feature_id for f in nxt.features}
    sci = stub.ListFeatures(pb.ListFeaturesRequest(attribute="sci-fi"), timeout=10)
    assert sci.total >= 1 and all(f.label == "Sci-Fi" for f in sci.features)
    assert any(f.top_feature_of_label for f in sci.features)
    f = stub.GetFeature(pb.GetFeatureRequest(feature_id=sci.features[0].feature_id), timeout=10).feature
    assert f.label == "Sci-Fi" and len(f.promoted_items) == 10 and f.top_items
    ex = stub.Explain(pb.ExplainRequest(history=histories[0], k=3, features=4), timeout=10)
    assert len(ex.items) == 3 and 1 <= len(ex.features) <= 4
    assert all(len(it.contributions) == len(ex.features) for it in ex.items)


def test_client_cli(served, capsys):
    _, port, histories, _ = served
    addr = f"127.0.0.1:{port}"
    hist = ",".join(map(str, histories[0][-10:]))
    assert main(["client", "recommend", "--address", addr, "--history", hist + ",999999", "--edit", "Sci-Fi=add:3", "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "steering: feature" in out and "999999" in out and out.count("\n") >= 7
    assert main(["client", "features", "--address", addr, "--attribute", "Western", "--limit", "3"]) == 0
    assert "Western" in capsys.readouterr().out
    assert main(["client", "explain", "--address", addr, "--history", hist, "--k", "3"]) == 0
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--edit", "Polka=1"]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--edit", "Action=nan"]) == 2


def test_fuzzed_requests_never_crash_and_rejections_are_invalid_argument(served):
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st

    stub, _, histories, _ = served
    known = sorted({i for h in histories for i in h})
    ids = st.one_of(st.sampled_from(known), st.integers(-2**63, 2**63 - 1), st.integers(0, 2000))
    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-12, 12))
    target = st.one_of(st.builds(lambda j: {"feature_id": j}, st.integers(-2**31, 2**31 - 1)),
                       st.builds(lambda j: {"feature_id": j}, st.integers(0, 130)),
                       st.builds(lambda a: {"attribute": a}, st.sampled_from(["Action", "sci-fi", "Western", "Drama"])),
                       st.builds(lambda a: {"attribute": a}, st.text(max_size=20)),
                       st.just({}))
    steering = st.builds(lambda t, v, m, p: pb.Steering(value=v, mode=m, position=p, **t),
                         target, values, st.integers(0, 5), st.integers(0, 4))
    request = st.builds(lambda h, k, s, e: pb.RecommendRequest(history=h, k=k, steering=s, **e),
                        st.lists(ids, max_size=60), st.integers(-5, 1100), st.lists(steering, max_size=18),
                        st.sampled_from([{}, {"exclude_seen": True}, {"exclude_seen": False}]))
    sent = {"n": 0, "codes": {}}
    deadline = time.time() + 300
    window: list = []                  # requests in flight: up to 32 at once, so Serve batches them

    def settle(block: bool) -> None:
        while window and (block or window[0][0].done()):
            fut, req = window.pop(0)
            try:
                fut.result()
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, e.details(), req)
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
    assert cfg["grpc_options"]["grpc_servicer_functions"] == ["saerec.v1.recommender_pb2_grpc.add_RecommenderServicer_to_server"]
    assert cfg["grpc_options"]["port"] == 9000
    dep = app.deployments[0]
    assert dep.name == "Recommender" and dep.autoscaling_config and dep.ray_actor_options.num_cpus > 0
