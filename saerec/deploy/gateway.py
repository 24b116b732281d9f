"""Checks for the Gateway API objects of ``k8s/overlays/tls`` (TLS terminated in front of Serve).

Two layers, as for the KubeRay objects:
- the schema: Gateway API ships CRDs, not in the core schemas of ``kubernetes-validate``; the
  ``@kubernetes-models/gateway-api`` npm package (MIT) carries validators generated from those CRDs'
  OpenAPI schemas, run here through ``node`` when the package is installed (CI installs it into
  ``.ci/node`` with kustomize; ``$SAEREC_GATEWAY_MODELS`` points elsewhere);
- what a schema cannot see across objects, which a Gateway controller only reports in a route's
  status once applied: every route attaches to a listener of a Gateway in the same manifests that
  admits its kind and covers its hostnames, every HTTPS listener terminates TLS with a certificate,
  a GRPCRoute and an HTTPRoute never share a hostname on one listener (the GRPCRoute would be
  rejected), and the backends are the Serve Service's gRPC and HTTP ports from the Serve config.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

GROUP = "gateway.networking.k8s.io/v1"
KINDS = ("Gateway", "GRPCRoute", "HTTPRoute")
SERVE_SERVICE = "saerec-serve-svc"
MODELS = "@kubernetes-models/gateway-api"


def is_gateway(doc: dict) -> bool:
    return doc.get("apiVersion") == GROUP and doc.get("kind") in KINDS


def models_dir() -> Path | None:
    """The installed ``@kubernetes-models/gateway-api`` package folder, or None."""
    env = os.environ.get("SAEREC_GATEWAY_MODELS")
    here = Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules" / MODELS
    for p in ([Path(env)] if env else []) + [here]:
        if (p / "package.json").is_file():
            return p
    return None


SCRIPT = """
const [dir, docs] = [process.argv[1], JSON.parse(process.argv[2])];
const out = [];
for (const d of docs) {
  const mod = await import(`${dir}/gateway.networking.k8s.io/v1/${d.kind}.js`);
  try { new mod[d.kind](d).validate(); out.push([]); }
  catch (e) { out.push((e.errors || [{instancePath: "", message: e.message}]).map(x => [x.instancePath, x.message])); }
}
console.log(JSON.stringify(out));
"""


def schema_errors(docs: list[dict], models: Path) -> list[tuple[dict, str, str]]:
    """(object, JSON path, message) for every schema error of the Gateway API ``docs``, by the npm
    package's validators (one ``node`` process for all)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to run the Gateway API schema validators")
    r = subprocess.run([node, "--input-type=module", "-e", SCRIPT, str(models), json.dumps(docs)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise RuntimeError(f"the Gateway API validators failed: {r.stderr.strip()[-500:]}")
    results = json.loads(r.stdout)
    seen = set()                             # ajv repeats an error once per schema branch that reports it
    return [(d, path.strip("/").replace("/", "."), msg) for i, (d, errs) in enumerate(zip(docs, results))
            for path, msg in errs if not ((i, path, msg) in seen or seen.add((i, path, msg)))]


def _covers(listener_host: str | None, host: str) -> bool:
    if not listener_host:
        return True
    if listener_host.startswith("*."):
        return host.endswith(listener_host[1:]) and host.count(".") > listener_host.count(".") - 1
    return host == listener_host


def cross_object_errors(docs: list[dict], grpc_port: int | None, http_port: int | None) -> list[tuple[dict, str, str]]:
    """(object, path, message) for what only holds across the manifests (module docstring)."""
    out = []
    gateways = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Gateway" and is_gateway(d)}
    for g in gateways.values():
        for i, ls in enumerate(g.get("spec", {}).get("listeners", [])):
            tls = ls.get("tls") or {}
            if ls.get("protocol") == "HTTPS" and (tls.get("mode", "Terminate") != "Terminate"
                                                  or not tls.get("certificateRefs")):
                out.append((g, f"spec.listeners[{i}].tls", "an HTTPS listener must terminate TLS (mode Terminate) "
                                                            "with a certificateRefs Secret"))
    claimed: dict[tuple[str, str, str], str] = {}          # (gateway, listener, hostname) -> route kind
    for d in docs:
        if not is_gateway(d) or d["kind"] == "Gateway":
            continue
        spec = d.get("spec", {})
        want_port = grpc_port if d["kind"] == "GRPCRoute" else http_port
        for i, ref in enumerate(spec.get("parentRefs", [])):
            g = gateways.get(ref.get("name"))
            if g is None:
                out.append((d, f"spec.parentRefs[{i}].name", f"no Gateway {ref.get('name')!r} in these manifests"))
                continue
            listeners = [ls for ls in g["spec"].get("listeners", [])
                         if ref.get("sectionName") in (None, ls.get("name"))]
            if not listeners:
                out.append((d, f"spec.parentRefs[{i}].sectionName", f"Gateway {g['metadata']['name']} has no "
                            f"listener {ref.get('sectionName')!r}"))
            for ls in listeners:
                kinds = [k.get("kind") for k in ls.get("allowedRoutes", {}).get("kinds", [])]
                if kinds and d["kind"] not in kinds:
                    out.append((d, f"spec.parentRefs[{i}]", f"listener {ls.get('name')} admits {kinds}, not {d['kind']}"))
                for h in spec.get("hostnames", []) or [ls.get("hostname") or "*"]:
                    if not _covers(ls.get("hostname"), h):
                        out.append((d, "spec.hostnames", f"{h} is not served by listener {ls.get('name')} "
                                                         f"({ls.get('hostname')})"))
                    key = (g["metadata"]["name"], ls.get("name"), h)
                    if claimed.setdefault(key, d["kind"]) != d["kind"]:
                        out.append((d, "spec.hostnames", f"{h} on listener {ls.get('name')} is also an "
                                                         f"{claimed[key]}'s: a GRPCRoute and an HTTPRoute must not share it"))
        for r, rule in enumerate(spec.get("rules", [])):
            for b, ref in enumerate(rule.get("backendRefs", [])):
                where = f"spec.rules[{r}].backendRefs[{b}]"
                if ref.get("kind", "Service") == "Service" and ref.get("name") == SERVE_SERVICE and ref.get("port") != want_port:
                    out.append((d, where + ".port", f"{ref.get('port')} is not the Serve config's "
                                                    f"{'gRPC' if d['kind'] == 'GRPCRoute' else 'HTTP'} port {want_port}"))
    return out
