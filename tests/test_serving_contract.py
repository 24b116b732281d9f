"""The production contract of the gRPC recommender, over real gRPC on loopback through Ray Serve's
proxy, on the shared synthetic run: business rules (allow/deny lists, attribute filters) that hold
whatever the steering does, include_unsteered, RecommendBatch equal to single calls with per-entry
errors. The rules fuzz runs ``SAEREC_RULES_FUZZ`` random rule+steering combinations (1,000 by
default; docs/serving.md records a 5,000 run)."""

import math
import os

import grpc
import numpy as np
import pytest

from saerec.serving.client import to_steering
from saerec.v1 import recommender_pb2 as pb
from test_serving import served  # noqa: F401  (the module's own Serve application on the session run)


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
