"""The TLS piece of the k8s manifests (k8s/overlays/tls): a Gateway API Gateway terminating TLS in front
of Serve's plaintext gRPC and HTTP proxies. Rendered and validated (the renderer against the real
kustomize is tests/test_k8s.py, for every overlay), the Gateway API schemas through the npm models
package, the references between the objects, each rule against its violation, and a real TLS
handshake over loopback: a gRPC server with the certificate a ``kubernetes.io/tls`` Secret holds
for the listener's hostname answers the standard health check over TLS, and refuses plaintext and
another name. What it cannot show offline: a Gateway controller applying these objects."""

from __future__ import annotations

import base64
import copy
import datetime
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml

from conftest import missing, require_tool
from saerec.deploy import gateway, kustomize
from saerec.deploy.validate import validate

REPO = Path(__file__).resolve().parents[1]
TLS = REPO / "k8s" / "overlays" / "tls"


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return kustomize.render(TLS)


def of(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


def test_tls_overlay_routes_grpc_and_json_to_the_serve_ports_through_terminating_listeners(docs):
    serve = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "GRPCRoute", "Gateway", "HTTPRoute",
                                               "PersistentVolumeClaim", "RayCluster", "RayJob", "RayService"]
    gw, grpc_route, http_route = of(docs, "Gateway"), of(docs, "GRPCRoute"), of(docs, "HTTPRoute")
    assert {(ls["protocol"], ls["port"], ls["tls"]["mode"], ls["tls"]["certificateRefs"][0]["name"])
            for ls in gw["spec"]["listeners"]} == {("HTTPS", 443, "Terminate", "saerec-tls")}
    assert grpc_route["spec"]["rules"][0]["backendRefs"] == [{"name": "saerec-serve-svc", "port": serve["grpc_options"]["port"]}]
    assert http_route["spec"]["rules"][0]["backendRefs"] == [{"name": "saerec-serve-svc", "port": serve["http_options"]["port"]}]
    services = {m["method"]["service"] for m in grpc_route["spec"]["rules"][0]["matches"]}
    assert {"saerec.v1.Recommender", "grpc.health.v1.Health"} <= services
    assert gw["metadata"]["labels"]["app.kubernetes.io/part-of"] == "saerec"
    assert cross_object(docs) == []          # the whole overlay's validation: tests/test_k8s.py, every overlay


def cross_object(docs: list[dict]) -> list[str]:
    serve = yaml.safe_load((REPO / "serve" / "config.yaml").read_text())
    return [f"{d['kind']} {path}: {msg}" for d, path, msg in gateway.cross_object_errors(
        [d for d in docs if gateway.is_gateway(d)], serve["grpc_options"]["port"], serve["http_options"]["port"])]


def models() -> Path:
    require_tool("node", "apt-get install nodejs")
    found = gateway.models_dir()
    if found is None:
        missing("@kubernetes-models/gateway-api not installed (.ci/run installs it into .ci/node)")
    return found


def test_gateway_api_schemas_accept_the_manifests_and_reject_broken_ones(docs):
    found = models()
    gw = [d for d in docs if gateway.is_gateway(d)]
    assert gateway.schema_errors(gw, found) == []
    broken = copy.deepcopy(gw)
    broken[0]["spec"]["listeners"][0]["tls"]["mode"] = "Terminated"                 # not in the enum
    broken[1]["spec"]["rules"][0]["backendRefs"][0]["port"] = "9000"                 # a string
    del broken[2]["spec"]["parentRefs"][0]["name"]                                   # required
    errors = [(d["kind"], path) for d, path, _ in gateway.schema_errors(broken, found)]
    assert ("Gateway", "spec.listeners.0.tls.mode") in errors, errors
    assert ("GRPCRoute", "spec.rules.0.backendRefs.0.port") in errors, errors
    assert any(kind == "HTTPRoute" and path.startswith("spec.parentRefs.0") for kind, path in errors), errors


def _set(path: str, value):
    def change(docs):
        node = docs
        *head, last = path.split(".")
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


BREAKS = [
    ("no certificate", "Gateway", _set("spec.listeners.0.tls.certificateRefs", []), "must terminate TLS"),
    ("passthrough", "Gateway", _set("spec.listeners.1.tls.mode", "Passthrough"), "must terminate TLS"),
    ("unknown gateway", "GRPCRoute", _set("spec.parentRefs.0.name", "edge"), "no Gateway 'edge'"),
    ("unknown listener", "HTTPRoute", _set("spec.parentRefs.0.sectionName", "h2"), "no listener 'h2'"),
    ("kind not admitted", "GRPCRoute", _set("spec.parentRefs.0.sectionName", "https"), "not GRPCRoute"),
    ("hostname not served", "HTTPRoute", _set("spec.hostnames", ["api.example.org"]), "is not served by listener"),
    ("wrong gRPC port", "GRPCRoute", _set("spec.rules.0.backendRefs.0.port", 8000), "gRPC port 9000"),
    ("wrong HTTP port", "HTTPRoute", _set("spec.rules.0.backendRefs.0.port", 9000), "HTTP port 8000"),
]


@pytest.mark.parametrize("kind, change, expected", [b[1:] for b in BREAKS], ids=[b[0] for b in BREAKS])
def test_each_cross_object_rule_rejects_its_violation(docs, kind, change, expected):
    broken = copy.deepcopy(docs)
    change(of(broken, kind))
    findings = cross_object(broken)
    assert any(expected in f for f in findings), findings


def test_a_grpc_route_and_an_http_route_may_not_share_a_hostname_on_a_listener(docs):
    broken = copy.deepcopy(docs)
    gw = of(broken, "Gateway")
    gw["spec"]["listeners"][0]["allowedRoutes"]["kinds"].append({"kind": "HTTPRoute"})
    of(broken, "HTTPRoute")["spec"].update(parentRefs=[{"name": "saerec", "sectionName": "grpc"}],
                                           hostnames=["grpc.saerec.example.com"])
    assert any("must not share it" in f for f in cross_object(broken))


def self_signed(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for ``host``, as `kubectl create secret tls` would be given."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_tls_handshake_over_loopback_with_the_secret_for_the_listener_hostname(docs):
    """The Secret the overlay names, made as docs/deployment.md says, for the gRPC listener's hostname:
    a gRPC server terminating TLS with it answers grpc.health.v1 to a client that trusts the
    certificate and asks for that name; plaintext and another name fail."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    listener = next(ls for ls in of(docs, "Gateway")["spec"]["listeners"] if ls["name"] == "grpc")
    host, secret_name = listener["hostname"], listener["tls"]["certificateRefs"][0]["name"]
    crt, key = self_signed(host)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": secret_name},
              "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}}
    assert validate([secret]) == []                                        # the core Secret schema
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("saerec.v1.Recommender", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(data["tls.key"], data["tls.crt"])]))
    server.start()
    try:
        def check(channel) -> int:
            with channel:
                return health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="saerec.v1.Recommender"), timeout=5).status

        creds = grpc.ssl_channel_credentials(root_certificates=data["tls.crt"])
        assert check(grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                         options=[("grpc.ssl_target_name_override", host)])) == \
            health_pb2.HealthCheckResponse.SERVING
        for channel in (grpc.insecure_channel(f"127.0.0.1:{port}"),
                        grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                            options=[("grpc.ssl_target_name_override", "other.example.com")])):
            with pytest.raises(grpc.RpcError) as err:
                check(channel)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)
