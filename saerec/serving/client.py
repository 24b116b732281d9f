"""A small Python client for the saerec gRPC service.

    from saerec.serving.client import RecommenderClient
    with RecommenderClient("localhost:9000") as c:
        r = c.recommend([1, 2, 3], k=10, steering=["Sci-Fi=add:3", "Drama=add:-2"],
                        exclude_attributes=["Horror"], include_unsteered=True)
        for item in r.items:
            print(item.title, item.genres)

With a token (``token=`` or ``SAEREC_AUTH_TOKEN``), every call carries ``authorization: Bearer ...``.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import grpc

from ..errors import SteeringError
from ..steer.edits import Edit, parse_edit
from ..v1 import recommender_pb2 as pb
from ..v1 import recommender_pb2_grpc as pb_grpc

MODE = {"set": pb.STEERING_MODE_SET, "add": pb.STEERING_MODE_ADD, "scale": pb.STEERING_MODE_SCALE}
POSITION = {"last": pb.STEERING_POSITION_LAST, "all": pb.STEERING_POSITION_ALL}


def to_steering(edit: Edit | str) -> pb.Steering:
    """An :class:`Edit` (or its text form, ``Sci-Fi=add:3``) as a protobuf ``Steering``."""
    e = parse_edit(edit) if isinstance(edit, str) else edit
    if e.method != "sae":
        raise SteeringError("the service steers SAE features; probe edits are not served")
    target = {"feature_id": e.target} if isinstance(e.target, int) else {"attribute": e.target}
    return pb.Steering(value=e.value, mode=MODE[e.mode], position=POSITION[e.positions], **target)


class RecommenderClient:
    def __init__(self, address: str = "localhost:9000", timeout: float = 10.0, application: str | None = None,
                 token: str | None = None):
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.timeout = timeout
        token = token if token is not None else os.environ.get("SAEREC_AUTH_TOKEN")
        self.metadata = ((("application", application),) if application else ()) + \
            ((("authorization", f"Bearer {token}"),) if token else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request, timeout: float | None):
        return method(request, timeout=timeout or self.timeout, metadata=self.metadata)

    @staticmethod
    def request(history: Sequence[int], k: int = 10, steering: Iterable[Edit | str | pb.Steering] = (),
                exclude_seen: bool = True, allow_items: Sequence[int] = (), deny_items: Sequence[int] = (),
                include_attributes: Sequence[str] = (), exclude_attributes: Sequence[str] = (),
                include_unsteered: bool = False) -> pb.RecommendRequest:
        """A RecommendRequest: steering edits (text or protobuf) and business rules (docs/serving.md)."""
        steer = [s if isinstance(s, pb.Steering) else to_steering(s) for s in steering]
        return pb.RecommendRequest(history=list(history), k=k, steering=steer, exclude_seen=exclude_seen,
                                   allow_items=list(allow_items), deny_items=list(deny_items),
                                   include_attributes=list(include_attributes),
                                   exclude_attributes=list(exclude_attributes), include_unsteered=include_unsteered)

    def recommend(self, history: Sequence[int], k: int = 10, steering: Iterable[Edit | str | pb.Steering] = (),
                  exclude_seen: bool = True, timeout: float | None = None, **rules) -> pb.RecommendResponse:
        """``rules``: allow_items, deny_items, include_attributes, exclude_attributes, include_unsteered."""
        return self._call(self.stub.Recommend, self.request(history, k, steering, exclude_seen, **rules), timeout)

    def recommend_batch(self, requests: Sequence[pb.RecommendRequest], timeout: float | None = None) -> list:
        """RecommendBatch: one result per request (``.response`` or ``.error``), in order."""
        return list(self._call(self.stub.RecommendBatch, pb.RecommendBatchRequest(requests=list(requests)),
                               timeout).results)

    def list_features(self, attribute: str = "", label_contains: str = "", alive_only: bool = False,
                      page_size: int = 50, page_token: str = "", timeout: float | None = None):
        req = pb.ListFeaturesRequest(attribute=attribute, label_contains=label_contains, alive_only=alive_only,
                                     page_size=page_size, page_token=page_token)
        return self._call(self.stub.ListFeatures, req, timeout)

    def get_feature(self, feature_id: int, timeout: float | None = None) -> pb.Feature:
        return self._call(self.stub.GetFeature, pb.GetFeatureRequest(feature_id=feature_id), timeout).feature

    def explain(self, history: Sequence[int], k: int = 10, features: int = 8, timeout: float | None = None):
        return self._call(self.stub.Explain, pb.ExplainRequest(history=list(history), k=k, features=features), timeout)
