"""The JSON/HTTP API beside gRPC: ``POST /saerec/v1/<method>`` with the proto3 JSON mapping.

Each route parses its body into the ``saerec.v1`` request message (``json_format``: lowerCamelCase
or proto field names, int64 as number or string, enums by name or number) and calls the function
that answers the same RPC over gRPC, so validation, limits and messages are the service's own: a
rejected request is HTTP 400 with the message gRPC sends as INVALID_ARGUMENT details (``field: what
is wrong``). A body that is not the message (bad JSON, an unknown field, a wrong type) is 400 too, its
message also starting with the field's JSON path. Unknown paths are 404, other methods than POST 405,
a missing or wrong token 401 (where auth is on).

One table of routes, two servers: :class:`JsonApi` is transport-free (bytes in, a status and a dict
out) over a map from RPC name to the function answering it. ``saerec browse`` mounts it on its stdlib
server with the in-process service's functions (:func:`service_calls`); the Serve deployment mounts it
on Serve's HTTP proxy with the very methods its gRPC servicer runs (:mod:`.deployment`), batching
included.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import threading
from typing import Callable

from google.protobuf import json_format

from ..errors import SaerecError
from ..v1 import recommender_pb2 as pb

log = logging.getLogger("saerec.serving")

PREFIX = "/saerec/v1/"
MAX_BODY = 4 << 20          # bytes; a history of 100,000 ids is about 1 MB of JSON
ROUTES = {                  # path -> (request message, the RPC of saerec.v1.Recommender it mirrors)
    "recommend": (pb.RecommendRequest, "Recommend"),
    "recommend-batch": (pb.RecommendBatchRequest, "RecommendBatch"),
    "features": (pb.ListFeaturesRequest, "ListFeatures"),
    "feature": (pb.GetFeatureRequest, "GetFeature"),
    "explain": (pb.ExplainRequest, "Explain"),
}
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
          413: "INVALID_ARGUMENT", 500: "INTERNAL", 502: "UNAVAILABLE"}


def error(code: int, message: str) -> tuple[int, dict]:
    """The error body: ``{"error": {"code", "status", "message"}}`` (the gRPC status, as JSON)."""
    return code, {"error": {"code": code, "status": STATUS[code], "message": message}}


def service_calls(service) -> dict[str, Callable]:
    """RPC name -> the in-process :class:`~saerec.serving.service.RecommenderService` function
    answering it (what ``saerec browse`` serves; the deployment calls the same functions)."""
    return {"Recommend": service.recommend, "RecommendBatch": service.recommend_batch_call,
            "ListFeatures": service.list_features, "GetFeature": service.get_feature, "Explain": service.explain}


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
    """``handle(method, path, body)`` -> (HTTP status, JSON-ready dict), over ``calls`` (RPC name ->
    request message -> response message, or an awaitable of it: raising
    :class:`~saerec.errors.SaerecError` for a bad request). ``handle`` runs one request at a time (the
    stdlib server's threads share one model); ``handle_async`` is for an event loop (a Serve replica)."""

    def __init__(self, calls: dict[str, Callable]):
        missing = {rpc for _, rpc in ROUTES.values()} - set(calls)
        if missing:
            raise ValueError(f"JsonApi needs a function for every RPC; missing {sorted(missing)}")
        self.calls = calls
        self._lock = threading.Lock()

    def parse(self, method: str, path: str, body: bytes):
        """(route name, request message), or an error's (status, body)."""
        name = path.split("?", 1)[0][len(PREFIX):] if path.startswith(PREFIX) else None
        if name not in ROUTES:
            return error(404, f"path: no such method {path!r}; methods: "
                              + ", ".join(PREFIX + r for r in ROUTES))
        if method != "POST":
            return error(405, f"method: {PREFIX + name} takes POST with a JSON body, got {method}")
        if len(body) > MAX_BODY:
            return error(413, f"body: {len(body)} bytes; at most {MAX_BODY} are accepted")
        cls = ROUTES[name][0]
        try:
            obj = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            return error(400, f"body: not valid JSON ({e})")
        if not isinstance(obj, dict):
            return error(400, f"body: a JSON object ({cls.DESCRIPTOR.full_name}) is expected, got {type(obj).__name__}")
        try:
            return name, json_format.ParseDict(obj, cls())
        except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as e:
            return error(400, parse_error_message(e, cls.DESCRIPTOR.name))

    async def handle_async(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        parsed = self.parse(method, path, body)
        if isinstance(parsed[0], int):
            return parsed
        name, request = parsed
        try:
            response = self.calls[ROUTES[name][1]](request)
            if inspect.isawaitable(response):
                response = await response
        except SaerecError as e:          # InvalidRequest: the field-first message gRPC sends
            return error(400, str(e))
        except Exception:                 # a bug, not bad input: logged, answered, the server keeps serving
            log.exception("%s failed", PREFIX + name)
            return error(500, f"{PREFIX + name}: internal error (logged by the server)")
        return 200, json_format.MessageToDict(response)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        with self._lock:
            return asyncio.run(self.handle_async(method, path, body))
