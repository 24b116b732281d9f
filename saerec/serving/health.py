"""The standard gRPC health service (``grpc.health.v1.Health``) on Ray Serve's gRPC proxy.

Kubernetes gRPC probes, load balancers and ``grpc_health_probe`` speak this protocol, not Serve's own
``ray.serve.RayServeAPIService/Healthz``. Serve's proxy routes every method of the services in
``grpc_servicer_functions`` to a replica method of the same name, so a health service routed like
that could not answer before a replica exists, which is exactly when NOT_SERVING matters. Ray 2.60's
proxy server has ``add_passthrough_service`` (what its own server reflection uses): a service marked
so runs in the proxy itself. :func:`add_HealthServicer_to_server` (listed in ``grpc_servicer_functions``
after the Recommender's) marks ``grpc.health.v1.Health`` so and registers :class:`ServeHealth`.

Answers: service ``""`` (the server) and ``saerec.v1.Recommender`` are SERVING while at least one
``Recommender`` replica is RUNNING, i.e. has loaded its run (Serve marks a replica running once its
constructor, which loads the run, returned), NOT_SERVING otherwise; any other name is NOT_FOUND (the
protocol's answer for an unknown service). The replica count comes from the Serve controller, at most
every ``CACHE_S`` seconds, in a worker thread so the proxy's event loop never waits on it. Health is
not behind the shared-token auth: a kubelet probe sends no metadata.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "saerec.v1.Recommender"
DEPLOYMENT = "Recommender"
CACHE_S = 0.5
SERVICER = "saerec.serving.health.add_HealthServicer_to_server"


def running_replicas() -> int:
    """RUNNING replicas of every application's ``Recommender`` deployment (a blocking controller call)."""
    from ray import serve

    return sum(d.replica_states.get("RUNNING", 0) for app in serve.status().applications.values()
               for name, d in app.deployments.items() if name == DEPLOYMENT)


class ServeHealth(health_pb2_grpc.HealthServicer):
    def __init__(self, count=running_replicas):
        self._count = count
        self._cached: tuple[float, int] = (-1.0, 0)

    async def _status(self, service: str):
        if service not in ("", SERVICE):
            return None
        at, n = self._cached
        if time.monotonic() - at > CACHE_S:
            try:
                n = await asyncio.to_thread(self._count)
            except Exception:           # no controller (yet, or any more): not serving
                n = 0
            self._cached = (time.monotonic(), n)
        return health_pb2.HealthCheckResponse.SERVING if n > 0 else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request, context):
        status = await self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}; "
                                f"this server reports '' and {SERVICE!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request, context):
        """The current status, then each change (polled every second) until the client hangs up."""
        last = None
        while True:
            status = await self._status(request.service)
            status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(1.0)


def add_HealthServicer_to_server(servicer, server) -> None:  # noqa: N802  (the name Serve's config expects)
    """``grpc_servicer_functions`` entry: ``servicer`` is Serve's placeholder and is not used."""
    if not hasattr(server, "add_passthrough_service"):
        raise RuntimeError("this Ray Serve gRPC proxy cannot run a service itself (add_passthrough_service, "
                           "Ray >= 2.60): drop saerec.serving.health from grpc_servicer_functions")
    server.add_passthrough_service(health.SERVICE_NAME)
    health_pb2_grpc.add_HealthServicer_to_server(ServeHealth(), server)
