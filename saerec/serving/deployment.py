"""The Ray Serve application: the gRPC ``saerec.v1.Recommender`` service over one run directory.

Each replica loads the run (GPTRec + SAE + catalog) once. Method names match the RPC names, as
Serve's gRPC proxy requires. ``Recommend`` validates each request on its own (a bad request is
answered INVALID_ARGUMENT and never joins a batch), then ``@serve.batch`` groups concurrent valid
requests into one forward pass even when each carries different steering. The batch timeout is 0:
under load the requests that queue while a batch runs form the next one (measured: 2 ms of waiting
cost more latency at concurrency 1 than it bought in throughput). A request that finds no other
one waiting skips the batch queue and its hand-offs between asyncio tasks, which a lone request
only pays for.

The same replica answers the JSON API (``POST /saerec/v1/<method>``, :mod:`.jsonapi`) on Serve's HTTP
proxy: ``__call__`` parses the body and calls the very function the gRPC method runs (``Recommend``
through the same batching), so both transports give the same answers and the same field-first errors.

Entry points: ``app_builder`` (``import_path: saerec.serving.deployment:app_builder`` in a Serve
config, with ``args: {run: ...}``), ``start_grpc`` (what ``saerec serve`` and the tests call).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter

import grpc
from ray import serve

from ..v1 import recommender_pb2 as pb
from .auth import authorized, bearer_ok, load_token
from .health import SERVICER as HEALTH_SERVICER
from .jsonapi import JsonApi, error
from .service import InvalidRequest, RecommenderService

log = logging.getLogger("saerec.serving")

SERVICER = "saerec.v1.recommender_pb2_grpc.add_RecommenderServicer_to_server"
QUIET = {"enable_access_log": False, "log_level": "WARNING"}   # a log line per request costs more than the model
APP_NAME = "saerec"
ROUTE = "/saerec"          # an application without a route prefix gets no gRPC ingress either


def _reject(ctx, err: InvalidRequest, empty):
    """Answer INVALID_ARGUMENT with the message naming the field (the replica keeps serving)."""
    if ctx is not None:
        ctx.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        ctx.set_details(str(err))
    return empty


@serve.deployment(name="Recommender", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64,
                  logging_config=QUIET)
class Recommender:
    def __init__(self, run: str, max_batch_size: int = 32, batch_wait_timeout_s: float = 0.0, threads: int = 1,
                 traced: bool = True, compile: bool = False):
        import torch

        from ..model.traced import trace_blocks

        # one intra-op thread: a request's tensors are tiny, extra threads only spin against the
        # proxy for the same cores; scale out with replicas instead
        torch.set_num_threads(max(1, int(threads)))
        self.token = load_token()          # None: auth off (the default; on in the k8s manifests)
        self.service = RecommenderService(run)
        # a lone request spends more time in Python and dispatch than in arithmetic: compile the
        # pass ahead of time (opt-in: about a minute per replica start, close to but not bit-equal
        # with eager), or else run GPTRec's blocks as checked TorchScript traces (same lists as eager)
        self.compiled = compile and self.service.steerer.compile()
        self.traced = not self.compiled and traced and trace_blocks(self.service.steerer.model)
        self._waiting = 0                  # valid Recommend calls not yet answered
        self._sizes: Counter = Counter()   # forward passes by number of requests (1 = the direct path)
        self.reconfigure({"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_timeout_s})
        s = self.service                   # one function per RPC, called by the gRPC methods and the JSON API
        self.api = JsonApi({"Recommend": self._recommend, "RecommendBatch": s.recommend_batch_call,
                            "ListFeatures": s.list_features, "GetFeature": s.get_feature, "Explain": s.explain})
        log.info("serving %s (model %s%s%s)", run, self.service.version,
                 ", compiled" if self.compiled else ", traced blocks" if self.traced else "",
                 ", token auth" if self.token else "")

    def reconfigure(self, cfg: dict) -> None:
        """``user_config`` in the Serve config: batching knobs, applied without restarting replicas."""
        if "max_batch_size" in cfg:
            self._batched.set_max_batch_size(int(cfg["max_batch_size"]))
        if "batch_wait_timeout_s" in cfg:
            self._batched.set_batch_wait_timeout_s(float(cfg["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _batched(self, preps: list) -> list:
        self._sizes[len(preps)] += 1
        return self.service.recommend_batch(preps)

    async def _answer(self, prep):
        """Batch with whatever else is waiting; alone, run at once."""
        self._waiting += 1
        try:
            await asyncio.sleep(0)         # requests that arrived together register before we look
            if self._waiting == 1:
                self._sizes[1] += 1
                return self.service.recommend_batch([prep])[0]
            return await self._batched(prep)
        finally:
            self._waiting -= 1

    def pid(self) -> int:
        """The replica's process id (through a DeploymentHandle; used by the fault-injection test)."""
        return os.getpid()

    def scoring(self) -> str:
        """The scoring pass this replica runs, through a DeploymentHandle: "compiled" (the model holds a
        compiled pass), "traced" (compiling was off or failed) or "eager"."""
        return "compiled" if self.service.steerer.model.compiled is not None else "traced" if self.traced else "eager"

    def batching(self) -> dict:
        """The batching knobs in force, as Serve's batch queue holds them (through a DeploymentHandle)."""
        return {"max_batch_size": self._batched._get_max_batch_size(),
                "batch_wait_timeout_s": self._batched._get_batch_wait_timeout_s()}

    def batch_sizes(self) -> dict[int, int]:
        """Forward passes so far by the number of requests in each (through a DeploymentHandle)."""
        return dict(self._sizes)

    async def _recommend(self, request: pb.RecommendRequest) -> pb.RecommendResponse:
        """Validate (InvalidRequest: never joins a batch), then batch with whatever else is waiting."""
        return await self._answer(self.service.prepare(request))

    async def __call__(self, request):
        """HTTP: the JSON API (Serve's HTTP proxy hands the route prefix's requests here as Starlette
        requests). With auth on, a missing or wrong ``Authorization: Bearer`` header is 401."""
        from starlette.responses import JSONResponse

        if not bearer_ok(request.headers.get("authorization", ""), self.token):
            status, body = error(401, "Authorization: missing or wrong token; send the header "
                                      "'Authorization: Bearer <token>'")
        else:
            path, root = request.url.path, request.scope.get("root_path") or ""
            if root not in ("", "/") and path.startswith(root):   # the app's route prefix stands for /saerec
                path = "/saerec" + path[len(root):]
            status, body = await self.api.handle_async(request.method, path, await request.body())
        return JSONResponse(body, status_code=status)

    async def Recommend(self, request: pb.RecommendRequest, grpc_context=None) -> pb.RecommendResponse:
        if not authorized(grpc_context, self.token):
            return pb.RecommendResponse()
        try:
            return await self._recommend(request)
        except InvalidRequest as e:
            return _reject(grpc_context, e, pb.RecommendResponse())

    async def RecommendBatch(self, request: pb.RecommendBatchRequest, grpc_context=None) -> pb.RecommendBatchResponse:
        """Many requests in one call: validated one by one (a bad entry is its own error), then scored
        in batched passes (cut by history length), not through the per-request batch queue."""
        if not authorized(grpc_context, self.token):
            return pb.RecommendBatchResponse()
        try:
            return self.service.recommend_batch_call(request)
        except InvalidRequest as e:
            return _reject(grpc_context, e, pb.RecommendBatchResponse())

    def ListFeatures(self, request: pb.ListFeaturesRequest, grpc_context=None) -> pb.ListFeaturesResponse:
        if not authorized(grpc_context, self.token):
            return pb.ListFeaturesResponse()
        try:
            return self.service.list_features(request)
        except InvalidRequest as e:
            return _reject(grpc_context, e, pb.ListFeaturesResponse())

    def GetFeature(self, request: pb.GetFeatureRequest, grpc_context=None) -> pb.GetFeatureResponse:
        if not authorized(grpc_context, self.token):
            return pb.GetFeatureResponse()
        try:
            return self.service.get_feature(request)
        except InvalidRequest as e:
            return _reject(grpc_context, e, pb.GetFeatureResponse())

    def Explain(self, request: pb.ExplainRequest, grpc_context=None) -> pb.ExplainResponse:
        if not authorized(grpc_context, self.token):
            return pb.ExplainResponse()
        try:
            return self.service.explain(request)
        except InvalidRequest as e:
            return _reject(grpc_context, e, pb.ExplainResponse())


@serve.deployment(name="Echo", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64, logging_config=QUIET)
class Echo:
    """The floor for benchmarks: the same service and proxy, no model (an empty answer)."""

    async def Recommend(self, request: pb.RecommendRequest, grpc_context=None) -> pb.RecommendResponse:
        return pb.RecommendResponse(model_version="echo")


def app_builder(args: dict):
    """Serve application builder: ``args`` = {run: RUN, replicas: 1, max_batch_size: 32, threads: 1, traced: true,
    compile: false, ...}."""
    run = args.get("run")
    if not run:
        raise ValueError("the saerec Serve application needs args.run: the run directory to serve")
    opts = {k: args[k] for k in ("max_batch_size", "batch_wait_timeout_s", "threads", "traced", "compile")
            if k in args}
    dep = Recommender
    if "replicas" in args:
        dep = dep.options(num_replicas=int(args["replicas"]))
    return dep.bind(str(run), **opts)


def start_grpc(port: int = 9000, http_port: int = 8000, host: str = "127.0.0.1") -> None:
    """Start Serve's proxies with the saerec servicer and the standard health service on ``port``
    (server reflection is on: Serve's default), HTTP stays on for Serve's own health checks."""
    serve.start(grpc_options={"port": port, "grpc_servicer_functions": [SERVICER, HEALTH_SERVICER]},
                http_options={"host": host, "port": http_port}, logging_config=QUIET)
