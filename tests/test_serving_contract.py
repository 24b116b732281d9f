"""The production contract of the gRPC recommender, over real gRPC on loopback through Ray Serve's
proxy, on the shared synthetic run: business rules (allow/deny lists, attribute filters) that hold
whatever the steering does, include_unsteered, RecommendBatch equal to single calls with per-entry
errors, shared-token auth, grpc.health.v1 and server reflection. The rules fuzz runs ``SAEREC_RULES_FUZZ`` random rule+steering combinations (1,000 by
default; docs/serving.md records a 5,000 run)."""

import math
import os
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from saerec.serving.client import to_steering
from saerec.v1 import recommender_pb2 as pb
from test_serving import served  # noqa: F401  (the module's own Serve application on the session run)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))    # json_api_fuzz: the fuzz generator


@pytest.fixture(scope="module")
def table(served):  # noqa: F811
    """The oracle's view of the run: item id -> set of its (lower-cased) attributes, and the names."""
    from saerec.data.attributes import attribute_columns

    run = served[3]
    t = run.read_parquet("recommender/items.parquet")
    cols = attribute_columns(t)
    attrs = {int(i): {c.lower() for c in cols if row[c]} for i, row in zip(t["item_id"], t[cols].to_dict("records"))}
    return attrs, cols


def eligible(req, attrs: dict) -> set[int]:
    """Items the request's rules allow (before exclude_seen)."""
    ok = set(attrs) if not len(req.allow_items) else set(req.allow_items) & set(attrs)
    ok -= set(req.deny_items)
    inc = {a.lower() for a in req.include_attributes}
    exc = {a.lower() for a in req.exclude_attributes}
    return {i for i in ok if inc <= attrs[i] and not exc & attrs[i]}


def check_rules(req, resp, attrs: dict) -> None:
    """No returned item (steered or unsteered) violates a rule, the list is as long as the eligible
    items allow, and a short list is flagged."""
    k = req.k or 10
    allowed = eligible(req, attrs)
    known = [i for i in req.history if i in attrs]
    seen = set(req.history) if (req.exclude_seen if req.HasField("exclude_seen") else True) and known else set()
    want = min(k, len(allowed - seen))
    lists = [resp.items] + ([resp.unsteered_items] if req.include_unsteered else [])
    for items in lists:
        got = [it.item_id for it in items]
        bad = set(got) - allowed
        assert not bad, f"items {sorted(bad)} violate the rules"
        assert not set(got) & seen and len(got) == len(set(got)) == want, (got, want)
    assert resp.fewer_than_k == (want < k)
    assert bool(resp.unsteered_items) == (req.include_unsteered and want > 0)


def ids(items) -> list[int]:
    return [it.item_id for it in items]


def test_each_rule_holds_with_and_without_steering_and_only_filters(served, table):  # noqa: F811
    """Each rule type, with and without steering towards what it forbids: the ruled list is exactly
    the unruled ranking with the ineligible items skipped (rules change eligibility, not scores)."""
    stub, _, histories, _ = served
    attrs, _ = table
    h = histories[0]
    some = sorted(attrs)[::7][:12]
    rules = [dict(exclude_attributes=["sci-fi"]), dict(include_attributes=["Action"]),
             dict(include_attributes=["Western", "popularity:high"]), dict(deny_items=some),
             dict(allow_items=some + [99999999]), dict(allow_items=some, exclude_attributes=["Children"], deny_items=some[:2])]
    for steer in ([], ["Sci-Fi=add:5"], ["Action=8", "Western=add:-3@all"]):
        s = [to_steering(e) for e in steer]
        full = stub.Recommend(pb.RecommendRequest(history=h, k=1000, steering=s), timeout=10)
        for r in rules:
            req = pb.RecommendRequest(history=h, k=10, steering=s, **r)
            resp = stub.Recommend(req, timeout=10)
            check_rules(req, resp, attrs)
            ok = eligible(req, attrs)
            assert ids(resp.items) == [i for i in ids(full.items) if i in ok][:10], (steer, r)
    # the steering pushes Sci-Fi up, the rule still keeps it out
    up = stub.Recommend(pb.RecommendRequest(history=h, k=10, steering=[to_steering("Sci-Fi=add:5")]), timeout=10)
    assert any("sci-fi" in attrs[i] for i in ids(up.items))
    # an allow list smaller than k: what exists, flagged; a history the model does not know: rules too
    small = stub.Recommend(pb.RecommendRequest(history=h, k=10, allow_items=some[:3]), timeout=10)
    assert len(small.items) <= 3 and small.fewer_than_k
    pop = stub.Recommend(pb.RecommendRequest(history=[99999999], k=5, exclude_attributes=["Action"]), timeout=10)
    assert pop.popularity_fallback and len(pop.items) == 5 and not any("action" in attrs[i] for i in ids(pop.items))


BAD_RULES = [
    ("include_attributes[1]", dict(include_attributes=["Action", "Polka"])),
    ("exclude_attributes[0]", dict(exclude_attributes=[" "])),
    ("allow_items", dict(allow_items=list(range(100_001)))),
    ("deny_items", dict(deny_items=list(range(100_001)))),
    ("include_attributes", dict(include_attributes=["Action"] * 65)),
    ("exclude_attributes", dict(exclude_attributes=["Action"] * 65)),
]


def test_malformed_rules_are_invalid_argument_naming_the_field(served):  # noqa: F811
    stub, _, histories, _ = served
    for name, r in BAD_RULES:
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(pb.RecommendRequest(history=histories[0], **r), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.value)
        assert err.value.details().startswith(name + ":"), (name, err.value.details())
    assert "known attributes" in stub.RecommendBatch(pb.RecommendBatchRequest(requests=[
        pb.RecommendRequest(history=histories[0], include_attributes=["Polka"])]), timeout=10).results[0].error.message
    for n in (0, 257):
        with pytest.raises(grpc.RpcError) as err:
            stub.RecommendBatch(pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=[1])] * n), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("requests:")
    assert len(stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=10).items) == 10


def random_request(rng, histories, attrs: dict, cols: list[str]) -> pb.RecommendRequest:
    """A random rule+steering combination; some with a malformed rule (an unknown attribute)."""
    items = sorted(attrs)
    pick = lambda n: rng.choice(items, size=n).tolist() if n else []  # noqa: E731
    names = lambda: [str(rng.choice(cols)) for _ in range(rng.integers(0, 3))]  # noqa: E731
    r = dict(history=histories[rng.integers(len(histories))] if rng.random() < 0.9 else pick(3) + [99999999],
             k=int(rng.choice([0, 1, 5, 10, 50, 200])), include_unsteered=bool(rng.random() < 0.3))
    if rng.random() < 0.4:
        r["allow_items"] = pick(int(rng.integers(1, 60)))
    if rng.random() < 0.4:
        r["deny_items"] = pick(int(rng.integers(1, 40)))
    if rng.random() < 0.5:
        r["include_attributes"] = [a.upper() if rng.random() < 0.2 else a for a in names()]
    if rng.random() < 0.5:
        r["exclude_attributes"] = names()
    if rng.random() < 0.03:
        r["exclude_attributes"] = r.get("exclude_attributes", []) + ["no-such-attribute"]
    if rng.random() < 0.5:
        r["exclude_seen"] = bool(rng.random() < 0.7)
    edits = []
    for target in rng.choice(["Action", "Sci-Fi", "Western", "Children", "Fantasy"], size=rng.integers(0, 4), replace=False):
        edits.append(pb.Steering(attribute=str(target), value=float(rng.uniform(-10, 10)), mode=int(rng.integers(1, 4)),
                                 position=int(rng.integers(1, 3))))
    return pb.RecommendRequest(steering=edits, **r)


def test_fuzzed_rules_and_steering_never_return_a_forbidden_item(served, table):  # noqa: F811
    stub, _, histories, _ = served
    attrs, cols = table
    n = int(os.environ.get("SAEREC_RULES_FUZZ", "1000"))
    rng = np.random.default_rng(22)
    codes = {"OK": 0, "INVALID_ARGUMENT": 0}
    window: list = []

    def settle(block: bool) -> None:
        while window and (block or window[0][0].done()):
            fut, req = window.pop(0)
            try:
                resp = fut.result()
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details().startswith("exclude_attributes["), e
                assert "no-such-attribute" in req.exclude_attributes
                codes["INVALID_ARGUMENT"] += 1
                continue
            try:
                check_rules(req, resp, attrs)
            except AssertionError as e:
                raise AssertionError(f"{e}\nrequest:\n{req}\nanswer:\n{resp}") from None
            codes["OK"] += 1

    for _ in range(n):
        req = random_request(rng, histories, attrs, cols)
        window.append((stub.Recommend.future(req, timeout=60), req))
        settle(block=len(window) >= 32)        # concurrent: Serve batches requests with different rules
    settle(block=True)
    assert sum(codes.values()) == n and codes["OK"] > 0.9 * n and codes["INVALID_ARGUMENT"] > 0, codes
    print(f"rules fuzz: {n} combinations, {codes}")


def test_include_unsteered_pairs_the_lists_of_one_request(served, table):  # noqa: F811
    stub, _, histories, _ = served
    attrs, _ = table
    for h in histories[:6]:
        for steer in (["Sci-Fi=add:4"], ["Western=6", "Action=add:-2"], ["Fantasy=add:3@all"], []):
            s = [to_steering(e) for e in steer]
            rules = dict(exclude_attributes=["Children"])
            both = stub.Recommend(pb.RecommendRequest(history=h, k=10, steering=s, include_unsteered=True, **rules), timeout=10)
            steered = stub.Recommend(pb.RecommendRequest(history=h, k=10, steering=s, **rules), timeout=10)
            plain = stub.Recommend(pb.RecommendRequest(history=h, k=10, **rules), timeout=10)
            assert not steered.unsteered_items
            for got, want in ((both.items, steered.items), (both.unsteered_items, plain.items)):
                assert len(got) == len(want) == 10
                for a, b in zip(got, want):     # one prefill, replayed: the same list up to float rounding
                    assert a.item_id == b.item_id or math.isclose(a.score, b.score, abs_tol=1e-4), (steer, a, b)
                    assert math.isclose(a.score, b.score, abs_tol=1e-4), (steer, a, b)


def test_recommend_batch_equals_single_calls(served):  # noqa: F811
    stub, _, histories, _ = served
    rng = np.random.default_rng(7)
    edits = [[], ["Sci-Fi=add:3"], ["Western=5", "Action=add:-2"], ["7=scale:0@all"]]
    reqs = [pb.RecommendRequest(history=histories[i % len(histories)], k=int(rng.choice([5, 10, 20])),
                                steering=[to_steering(e) for e in edits[i % len(edits)]],
                                include_unsteered=i % 3 == 0, exclude_attributes=["Fantasy"] if i % 2 else [])
            for i in range(32)]
    reqs[5] = pb.RecommendRequest(history=histories[0], k=5000)                       # a bad entry
    reqs[9] = pb.RecommendRequest(history=[99999999], k=3)                             # popularity fallback
    batch = stub.RecommendBatch(pb.RecommendBatchRequest(requests=reqs), timeout=30)
    assert len(batch.results) == len(reqs) and batch.model_version
    for i, (req, res) in enumerate(zip(reqs, batch.results)):
        if i == 5:
            assert res.WhichOneof("result") == "error" and res.error.field == "k"
            with pytest.raises(grpc.RpcError) as err:
                stub.Recommend(req, timeout=10)
            assert err.value.details() == res.error.message
            continue
        single = stub.Recommend(req, timeout=10)
        assert res.WhichOneof("result") == "response"
        got = res.response
        assert ids(got.items) == ids(single.items) and ids(got.unsteered_items) == ids(single.unsteered_items), i
        assert np.allclose([x.score for x in got.items], [x.score for x in single.items], atol=1e-4)
        assert (got.popularity_fallback, got.fewer_than_k) == (single.popularity_fallback, single.fewer_than_k)


def test_auth_token_sources(tmp_path):
    from saerec.errors import SaerecError
    from saerec.serving.auth import load_token

    assert load_token({}) is None                                       # off by default
    assert load_token({"SAEREC_AUTH_TOKEN": " s3cret\n"}) == b"s3cret"
    (tmp_path / "token").write_text("from-a-secret\n")
    assert load_token({"SAEREC_AUTH_TOKEN_FILE": str(tmp_path / "token")}) == b"from-a-secret"
    (tmp_path / "empty").write_text("\n")
    for path in (tmp_path / "empty", tmp_path / "missing"):              # asked for, not found: no open start
        with pytest.raises(SaerecError, match="SAEREC_AUTH_TOKEN_FILE"):
            load_token({"SAEREC_AUTH_TOKEN_FILE": str(path)})


def test_a_request_without_the_token_is_unauthenticated(served):  # noqa: F811
    """A second application whose replica has a token (as the k8s Secret gives it): calls without the
    header or with another token are UNAUTHENTICATED, with it they are answered."""
    from ray import serve

    from saerec.serving.deployment import Recommender
    from saerec.v1 import recommender_pb2_grpc as pb_grpc

    stub, port, histories, run = served
    dep = Recommender.options(name="Recommender", ray_actor_options={
        "num_cpus": 0.25, "runtime_env": {"env_vars": {"SAEREC_AUTH_TOKEN": "s3cret"}}})
    serve.run(dep.bind(str(run.root)), name="authed", route_prefix="/authed")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        authed = pb_grpc.RecommenderStub(channel)
        app = ("application", "authed")
        req = pb.RecommendRequest(history=histories[0], k=3)
        for md in ([app], [app, ("authorization", "Bearer wrong")], [app, ("authorization", "s3cret")]):
            for call, r in ((authed.Recommend, req), (authed.ListFeatures, pb.ListFeaturesRequest()),
                            (authed.RecommendBatch, pb.RecommendBatchRequest(requests=[req]))):
                with pytest.raises(grpc.RpcError) as err:
                    call(r, metadata=md, timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (md, err.value)
        ok = authed.Recommend(req, metadata=[app, ("authorization", "Bearer s3cret")], timeout=10)
        assert len(ok.items) == 3
        # the JSON API of the same replica (under its route prefix): 401 without the header or with another token
        from google.protobuf.json_format import MessageToDict

        from json_api_fuzz import post

        body = MessageToDict(req)
        for token in (None, "wrong"):
            status, answer = post(served.http_port, "/authed/v1/recommend", body, token=token)
            assert status == 401 and answer["error"]["message"].startswith("Authorization:"), (token, answer)
        status, answer = post(served.http_port, "/authed/v1/recommend", body, token="s3cret")
        assert status == 200 and [int(i["itemId"]) for i in answer["items"]] == ids(ok.items)
        # the application without a token stays open
        assert len(stub.Recommend(req, metadata=[("application", "saerec")], timeout=10).items) == 3
        channel.close()
    finally:
        serve.delete("authed")


def test_health_is_not_serving_until_the_run_loads_and_reflection_lists_the_service(served):  # noqa: F811
    """It deletes and redeploys the application (the tests after it use the redeployed one)."""
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    from ray import serve

    from saerec.serving.deployment import APP_NAME, ROUTE, app_builder

    stub, port, histories, run = served
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    check = lambda name="saerec.v1.Recommender": health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status  # noqa: E731
    assert check() == check("") == SERVING
    with pytest.raises(grpc.RpcError) as err:
        check("saerec.v1.Nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    db = ProtoReflectionDescriptorDatabase(channel)                       # what grpcurl does
    services = set(db.get_services())
    assert {"saerec.v1.Recommender", "grpc.health.v1.Health"} <= services, services
    desc = db.FindFileContainingSymbol("saerec.v1.Recommender")
    assert "RecommendBatch" in [m.name for s in desc.service if s.name == "Recommender" for m in s.method]

    deploy = lambda: serve.run(app_builder({"run": str(run.root)}), name=APP_NAME, route_prefix=ROUTE)  # noqa: E731
    serve.delete(APP_NAME)
    try:
        end = time.time() + 30
        while check() != NOT_SERVING:                                   # the cache lets a status live 0.5 s
            assert time.time() < end
            time.sleep(0.2)
        seen, deploying = [], threading.Thread(target=deploy)
        deploying.start()
        while deploying.is_alive():                                     # the replica loads the run meanwhile
            seen.append(check())
            time.sleep(0.1)
        deploying.join()
        end = time.time() + 30
        while check() != SERVING:
            assert time.time() < end, seen
            time.sleep(0.2)
        assert seen and seen[0] == NOT_SERVING, seen
    finally:
        if APP_NAME not in serve.status().applications:                 # the later tests need it
            deploy()
    assert len(stub.Recommend(pb.RecommendRequest(history=histories[0]), timeout=10).items) == 10
    channel.close()


def test_client_class_and_cli_expose_the_new_fields(served, table, capsys):  # noqa: F811
    from saerec.cli import main
    from saerec.serving.client import RecommenderClient

    _, port, histories, _ = served
    attrs, _ = table
    addr = f"127.0.0.1:{port}"
    with RecommenderClient(addr) as c:
        r = c.recommend(histories[0], k=5, steering=["Action=add:4"], exclude_attributes=["action"],
                        deny_items=[histories[0][0]], include_unsteered=True)
        assert len(r.items) == len(r.unsteered_items) == 5 and not any("action" in attrs[i] for i in ids(r.items))
        res = c.recommend_batch([c.request(histories[0], k=2, allow_items=histories[1][:1], exclude_seen=False),
                                 c.request(histories[1], k=-1)])
        assert ids(res[0].response.items) == histories[1][:1] and res[0].response.fewer_than_k
        assert res[1].error.field == "k"
    hist = ",".join(map(str, histories[0][-10:]))
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--edit", "Sci-Fi=add:3", "--k", "4",
                 "--exclude-attribute", "Sci-Fi", "--include-attribute", "Action", "--deny", "1,2", "--unsteered"]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if not line.startswith("steering:")]
    assert "unsteered:" in out and not any("Sci-Fi" in line for line in listed) and out.count("Action") >= 4
    assert main(["client", "recommend", "--address", addr, "--history", hist, "--include-attribute", "Polka"]) == 2
    assert "include_attributes[0]" in capsys.readouterr().err


JSON_RPCS = [("recommend", "Recommend", pb.RecommendResponse), ("recommend-batch", "RecommendBatch", pb.RecommendBatchResponse),
             ("features", "ListFeatures", pb.ListFeaturesResponse), ("feature", "GetFeature", pb.GetFeatureResponse),
             ("explain", "Explain", pb.ExplainResponse)]


def test_json_api_on_serve_answers_as_grpc_and_rejects_as_it(served, table):  # noqa: F811
    """``POST /saerec/v1/...`` on Serve's HTTP proxy, same replica as gRPC: a good request's answer is
    the gRPC answer (proto3 JSON back to the message: equal); a bad one is 400 with exactly the
    INVALID_ARGUMENT details; 200 fuzzed bodies get no 5xx and field-first 400s."""
    from google.protobuf.json_format import MessageToDict, ParseDict

    from json_api_fuzz import fuzz, post

    stub, _, histories, run = served
    port, h = served.http_port, histories[0]
    steer = [to_steering("Sci-Fi=add:5"), to_steering("Western=2@all")]
    good = [pb.RecommendRequest(history=h, k=7, steering=steer, exclude_attributes=["Action"], include_unsteered=True),
            pb.RecommendBatchRequest(requests=[pb.RecommendRequest(history=h, k=3),
                                               pb.RecommendRequest(history=histories[1], k=5000)]),
            pb.ListFeaturesRequest(attribute="sci-fi", page_size=3), pb.GetFeatureRequest(feature_id=3),
            pb.ExplainRequest(history=h, k=3)]
    for (route, rpc, cls), req in zip(JSON_RPCS, good):
        status, body = post(port, f"/saerec/v1/{route}", MessageToDict(req))
        assert status == 200, (route, body)
        assert ParseDict(body, cls()) == getattr(stub, rpc)(req, timeout=30), route
    bad = [(route, req) for route, reqs in [
        ("recommend", [pb.RecommendRequest(history=h, **r) for _, r in BAD_RULES]
         + [pb.RecommendRequest(history=h, k=5000), pb.RecommendRequest(history=h, steering=[pb.Steering(feature_id=10 ** 6, value=1)])]),
        ("recommend-batch", [pb.RecommendBatchRequest()]), ("features", [pb.ListFeaturesRequest(page_token="x")]),
        ("feature", [pb.GetFeatureRequest(feature_id=-1)]), ("explain", [pb.ExplainRequest(history=[99999999])])] for req in reqs]
    for route, req in bad:
        rpc = next(r for name, r, _ in JSON_RPCS if name == route)
        with pytest.raises(grpc.RpcError) as err:
            getattr(stub, rpc)(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status, body = post(port, f"/saerec/v1/{route}", MessageToDict(req))
        assert (status, body["error"]["message"]) == (400, err.value.details()), route
    for raw, field in [(b"{not json", "body:"), (b'{"k": "ten"}', "k:"), (b'{"colour": 1}', "colour:")]:
        status, body = post(port, "/saerec/v1/recommend", raw)
        assert status == 400 and body["error"]["message"].startswith(field), (raw, body)
    assert post(port, "/saerec/v1/nope", {})[0] == 404
    codes, broken = fuzz(port, h[-8:], 200, 128, seed=23)
    print("JSON API on Serve, fuzz statuses:", codes)
    assert not broken and codes.get(200, 0) > 20 and codes.get(400, 0) > 20, (codes, broken[:3])
    assert len(stub.Recommend(pb.RecommendRequest(history=h), timeout=10).items) == 10
