"""A small Python client for the saerec gRPC service.

    from saerec.serving.client import RecommenderClient
    with RecommenderClient("localhost:9000") as c:
        r = c.recommend([1, 2, 3], k=10, steering=["Sci-Fi=add:3", "Drama=add:-2"])
        for item in r.items:
            print(item.title, item.genres)
"""

from __future__ import annotations

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
    def __init__(self, address: str = "localhost:9000", timeout: float = 10.0, application: str | None = None):
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.RecommenderStub(self.channel)
        self.timeout = timeout
        self.metadata = (("application", application),) if application else ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request, timeout: float | None):
        return method(request, timeout=timeout or self.timeout, metadata=self.metadata)

    def recommend(self, history: Sequence[int], k: int = 10, steering: Iterable[Edit | str | pb.Steering] = (),
                  exclude_seen: bool = True, timeout: float | None = None) -> pb.RecommendResponse:
        steer = [s if isinstance(s, pb.Steering) else to_steering(s) for s in steering]
        req = pb.RecommendRequest(history=list(history), k=k, steering=steer, exclude_seen=exclude_seen)
        return self._call(self.stub.Recommend, req, timeout)

    def list_features(self, attribute: str = "", label_contains: str = "", alive_only: bool = False,
                      page_size: int = 50, page_token: str = "", timeout: float | None = None):
        req = pb.ListFeaturesRequest(attribute=attribute, label_contains=label_contains, alive_only=alive_only,
                                     page_size=page_size, page_token=page_token)
        return self._call(self.stub.ListFeatures, req, timeout)

    def get_feature(self, feature_id: int, timeout: float | None = None) -> pb.Feature:
        return self._call(self.stub.GetFeature, pb.GetFeatureRequest(feature_id=feature_id), timeout).feature

    def explain(self, history: Sequence[int], k: int = 10, features: int = 8, timeout: float | None = None):
        return self._call(self.stub.Explain, pb.ExplainRequest(history=list(history), k=k, features=features), timeout)
