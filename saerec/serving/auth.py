"""Optional shared-token auth for the gRPC service and its JSON API: ``authorization: Bearer <token>``
metadata (gRPC) or header (HTTP: a missing or wrong one is 401).

Off unless a replica finds a token: ``SAEREC_AUTH_TOKEN`` (the token itself) or
``SAEREC_AUTH_TOKEN_FILE`` (a file holding it, e.g. a mounted Kubernetes Secret: the k8s manifests
turn it on that way). A call without the header, or with another token, is answered UNAUTHENTICATED
before any work; the comparison is constant-time (``hmac.compare_digest``). Checked in the replica,
because Serve's proxy forwards the call's metadata there and runs no user code itself. Calls through a
DeploymentHandle (inside the cluster) carry no gRPC context and are not checked. The health service
is not covered (a kubelet probe sends no metadata); see :mod:`.health`. TLS is not here: Serve's gRPC
proxy has none, so it terminates in front of it (docs/serving.md), and the token travels in clear
only inside the cluster.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import grpc

from ..errors import SaerecError

TOKEN_ENV = "SAEREC_AUTH_TOKEN"
TOKEN_FILE_ENV = "SAEREC_AUTH_TOKEN_FILE"


def load_token(env=os.environ) -> bytes | None:
    """The shared token, or None (auth off). A named file that is missing or empty is an error: a
    replica must not start open when auth was asked for."""
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip().encode()
    path = env.get(TOKEN_FILE_ENV)
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise SaerecError(f"{TOKEN_FILE_ENV}={path}: cannot read the auth token ({e.strerror})") from None
    if not token:
        raise SaerecError(f"{TOKEN_FILE_ENV}={path}: the auth token file is empty")
    return token.encode()


def bearer_ok(sent: str | bytes, token: bytes | None) -> bool:
    """Whether an ``authorization`` value carries ``token`` (always, with auth off); constant-time."""
    if token is None:
        return True
    sent = sent.encode() if isinstance(sent, str) else bytes(sent)
    return hmac.compare_digest(sent, b"Bearer " + token)


def authorized(ctx, token: bytes | None) -> bool:
    """Whether the call may proceed; if not, ``ctx`` is set to UNAUTHENTICATED."""
    if token is None or ctx is None:
        return True
    if bearer_ok(next((v for k, v in ctx.invocation_metadata() if k == "authorization"), ""), token):
        return True
    ctx.set_code(grpc.StatusCode.UNAUTHENTICATED)
    ctx.set_details("authorization: missing or wrong token; send metadata 'authorization: Bearer <token>'")
    return False
