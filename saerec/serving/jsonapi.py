"""The JSON/HTTP API beside gRPC: ``POST /saerec/v1/<method>`` with the proto3 JSON mapping.

Each route parses its body into the ``saerec.v1`` request message (``json_format``: lowerCamelCase
or proto field names, int64 as number or string, enums by name or number) and calls the same
:class:`~saerec.serving.service.RecommenderService` method the gRPC servicer calls, so validation,
limits and messages are the service's own: a rejected request is HTTP 400 with the message gRPC sends
as INVALID_ARGUMENT details (``field: what is wrong``). A body that is not the message (bad JSON,
an unknown field, a wrong type) is 400 too, its message also starting with the field's JSON path.
Unknown paths are 404, other methods than POST 405. The handler is transport-free
(:meth:`JsonApi.handle` takes bytes and returns a status and a dict), so the stdlib server of
``saerec browse`` mounts it, and a Serve ingress can mount it the same way.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from google.protobuf import json_format

from ..errors import SaerecError
from ..v1 import recommender_pb2 as pb

log = logging.getLogger("saerec.browse")

PREFIX = "/saerec/v1/"
MAX_BODY = 4 << 20          # bytes; a history of 100,000 ids is about 1 MB of JSON
ROUTES = {                  # path -> (request message, the service call): the RPCs of saerec.v1.Recommender
    "recommend": (pb.RecommendRequest, lambda s, r: s.recommend(r)),
    "recommend-batch": (pb.RecommendBatchRequest, lambda s, r: pb.RecommendBatchResponse(
        results=s.recommend_many(r.requests), model_version=s.version)),     # as the servicer's RecommendBatch
    "features": (pb.ListFeaturesRequest, lambda s, r: s.list_features(r)),
    "feature": (pb.GetFeatureRequest, lambda s, r: s.get_feature(r)),
    "explain": (pb.ExplainRequest, lambda s, r: s.explain(r)),
}
STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "INVALID_ARGUMENT",
          500: "INTERNAL"}


def error(code: int, message: str) -> tuple[int, dict]:
    """The error body: ``{"error": {"code", "status", "message"}}`` (the gRPC status, as JSON)."""
    return code, {"error": {"code": code, "status": STATUS[code], "message": message}}


def parse_error_message(err: Exception, message_name: str) -> str:
    """A ``json_format`` error as ``field.path: reason`` (the field first, as the service's messages)."""
    text = str(err)
    unknown = re.search(r'has no field named "([^"]+)" at "([^"]*)"', text)
    if unknown:
        where = re.sub(rf"^{message_name}\.?", "", unknown.group(2))
        fields = re.search(r"Available Fields\(except extensions\): \"\[(.*)\]\"", text)
        valid = f"; valid fields: {fields.group(1)}" if fields else ""
        return f"{where + '.' if where else ''}{unknown.group(1)}: unknown field{valid}"
    path = re.search(rf'at "?{message_name}((?:\.\w+|\[\d+\])*)"?', text)
    names = re.findall(r"Failed to parse (\w+) field", text)
    field = path.group(1).lstrip(".") if path and path.group(1) else ".".join(names) or "body"
    reason = re.sub(r"^(Failed to parse \w+ field: )+", "", text)
    reason = re.sub(rf'\s*at "?{message_name}[^\s"]*"?\.*$', "", reason).rstrip(".") or "invalid"
    return f"{field}: {reason}"


class JsonApi:
    """``handle(method, path, body)`` -> (HTTP status, JSON-ready dict). Requests run one at a time
    (the model is not shared between threads of the stdlib server)."""

    def __init__(self, service):
        self.service = service
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        name = path.split("?", 1)[0][len(PREFIX):] if path.startswith(PREFIX) else None
        if name not in ROUTES:
            return error(404, f"path: no such method {path!r}; methods: "
                              + ", ".join(PREFIX + r for r in ROUTES))
        if method != "POST":
            return error(405, f"method: {PREFIX + name} takes POST with a JSON body, got {method}")
        if len(body) > MAX_BODY:
            return error(413, f"body: {len(body)} bytes; at most {MAX_BODY} are accepted")
        cls, call = ROUTES[name]
        try:
            obj = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            return error(400, f"body: not valid JSON ({e})")
        if not isinstance(obj, dict):
            return error(400, f"body: a JSON object ({cls.DESCRIPTOR.full_name}) is expected, got {type(obj).__name__}")
        try:
            request = json_format.ParseDict(obj, cls())
        except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as e:
            return error(400, parse_error_message(e, cls.DESCRIPTOR.name))
        try:
            with self._lock:
                response = call(self.service, request)
        except SaerecError as e:          # InvalidRequest: the field-first message gRPC sends
            return error(400, str(e))
        except Exception:                 # a bug, not bad input: logged, answered, the server keeps serving
            log.exception("%s failed", PREFIX + name)
            return error(500, f"{PREFIX + name}: internal error (logged by the server)")
        return 200, json_format.MessageToDict(response)
