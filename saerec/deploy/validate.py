"""Validate rendered manifests: KubeRay CRD schemas, the operator's own rules, core Kubernetes
schemas, and saerec's deployment policy.

Why each layer:
- The CRDs' ``openAPIV3Schema`` is what the API server checks on ``kubectl apply``. It allows unknown
  fields, so a typo such as ``entrypointNumCpu`` would be dropped silently; we check strictly (as
  ``kubectl --validate=strict``) by closing every object that lists its properties.
- Some rules live only in the KubeRay operator's Go code (a RayJob's TTL needs
  ``shutdownAfterJobFinishes``, replica bounds, name lengths); they are reimplemented here.
- Core objects (ConfigMap, PVC, Service) are checked against the Kubernetes schemas that the
  ``kubernetes-validate`` package ships, when it is installed (the ``test`` extra).
- Gateway API objects (the TLS overlay) by :mod:`.gateway`: their CRD schemas through the npm
  models package where installed, and the references between them and to the Serve ports.
- The policy is ours: every container runs our image, non-root, with CPU and memory requests and
  limits; the Ray ports are declared; the RayService exposes the Serve config's gRPC port.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import UsageError
from . import gateway

CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}       # KubeRay's validation.go
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
KUBE_VERSION = "1.33"
HEAD_PORTS = {6379, 8265}


@dataclass(frozen=True)
class Finding:
    """One problem: which object, where in it, and what."""

    obj: str          # "RayJob saerec-pipeline"
    path: str         # "spec.rayClusterSpec.headGroupSpec" ("" for the whole object)
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path + ': ' if self.path else ''}{self.message}"


def default_schema_dir() -> Path:
    """``$SAEREC_KUBERAY_SCHEMAS``, else ``../shared/schemas/kuberay`` beside the checkout."""
    env = os.environ.get("SAEREC_KUBERAY_SCHEMAS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "schemas" / "kuberay"


def _label(doc: dict) -> str:
    return f"{doc.get('kind', '?')} {doc.get('metadata', {}).get('name', '?')}"


def _dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def strict(schema: dict) -> dict:
    """A copy of ``schema`` where every object that lists properties rejects unknown ones."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                close(v)
        elif isinstance(node, list):
            for v in node:
                close(v)

    close(schema)
    return schema


@lru_cache(maxsize=4)
def crd_validators(schema_dir: str) -> dict:
    """(apiVersion, kind) -> a strict Draft 7 validator for each served version of the KubeRay CRDs."""
    import jsonschema

    folder = Path(schema_dir)
    missing = [f for f in CRD_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"KubeRay CRD schemas not found in {folder} (missing {', '.join(missing)}); pass "
                         f"--schemas DIR or set SAEREC_KUBERAY_SCHEMAS to a folder with the CRDs of KubeRay "
                         f"v1.7.0 (ray-operator/config/crd/bases in the kuberay repository)")
    out = {}
    for kind, fname in CRD_FILES.items():
        # the CRDs are ~1 MB each: the C loader reads them in a fraction of the pure-Python time
        crd = yaml.load((folder / fname).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group = crd["spec"]["group"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(strict(v["schema"]["openAPIV3Schema"]))
    return out


def _message(error) -> str:
    """jsonschema's message, except for the unreadable regex of a resource quantity."""
    if error.validator == "pattern" and "[KMGTPE]i" in str(error.validator_value):
        return f"{error.instance!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)"
    return error.message


def schema_findings(doc: dict, schema_dir: str | Path, kube_version: str = KUBE_VERSION) -> list[Finding]:
    """The document against its CRD schema (KubeRay kinds) or the core Kubernetes schema."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if gateway.is_gateway(doc):              # CRDs outside KubeRay and the core schemas: validate() runs .gateway
        return []
    validators = crd_validators(str(schema_dir))
    if key in validators:
        errors = sorted(validators[key].iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        return [Finding(_label(doc), _dotted(e.absolute_path), _message(e)) for e in errors]
    if doc.get("kind") in CRD_FILES:
        return [Finding(_label(doc), "apiVersion", f"'{doc.get('apiVersion')}' is not served by the KubeRay CRDs "
                        f"(served: {', '.join(sorted(v for v, k in validators if k == doc['kind']))})")]
    try:
        import kubernetes_validate
    except ImportError:
        return []
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        # the package stops at the first error (it re-raises jsonschema's, fields copied)
        return [Finding(_label(doc), _dotted(e.absolute_path), e.message)]
    except kubernetes_validate.SchemaNotFoundError:
        return [Finding(_label(doc), "", f"no Kubernetes {kube_version} schema for {key[0]} {key[1]}")]
    return []


def _cluster_spec(doc: dict) -> tuple[dict | None, str]:
    spec = doc.get("spec", {})
    return {"RayCluster": (spec, "spec"), "RayJob": (spec.get("rayClusterSpec"), "spec.rayClusterSpec"),
            "RayService": (spec.get("rayClusterConfig"), "spec.rayClusterConfig")}.get(doc.get("kind"), (None, ""))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def operator_findings(doc: dict) -> list[Finding]:
    """Rules the KubeRay operator enforces in code rather than in the CRD schema. A value of the wrong
    type is the schema's finding: these rules skip it rather than fail on it."""
    kind, name, out = doc.get("kind"), doc.get("metadata", {}).get("name", ""), []
    label = _label(doc)
    if kind in MAX_NAME and len(name) > MAX_NAME[kind]:
        out.append(Finding(label, "metadata.name", f"{len(name)} characters; KubeRay allows at most {MAX_NAME[kind]}"))
    spec = doc.get("spec", {})
    if kind == "RayJob":
        mode = spec.get("submissionMode", "K8sJobMode")
        if isinstance(mode, str) and mode not in SUBMISSION_MODES:
            out.append(Finding(label, "spec.submissionMode",
                               f"'{spec['submissionMode']}' is not one of {', '.join(sorted(SUBMISSION_MODES))}"))
        if spec.get("ttlSecondsAfterFinished") and not spec.get("shutdownAfterJobFinishes"):
            out.append(Finding(label, "spec.ttlSecondsAfterFinished", "needs shutdownAfterJobFinishes: true"))
        if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
            out.append(Finding(label, "spec", "needs rayClusterSpec or clusterSelector"))
    if kind == "RayService":
        t = (spec.get("upgradeStrategy") or {}).get("type", "NewCluster")
        if isinstance(t, str) and t not in UPGRADE_TYPES:
            out.append(Finding(label, "spec.upgradeStrategy.type", f"'{t}' is not one of {', '.join(sorted(UPGRADE_TYPES))}"))
        problem = _serve_config(doc)[1]
        if problem:
            out.append(Finding(label, "spec.serveConfigV2", problem))
    cluster, where = _cluster_spec(doc)
    for i, g in enumerate((cluster or {}).get("workerGroupSpecs", [])):
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1)
        if not (_is_int(lo) and _is_int(hi)):
            continue
        if lo > hi:
            out.append(Finding(label, f"{where}.workerGroupSpecs[{i}]", f"minReplicas {lo} > maxReplicas {hi}"))
        if _is_int(g.get("replicas")) and not lo <= g["replicas"] <= hi:
            out.append(Finding(label, f"{where}.workerGroupSpecs[{i}].replicas",
                               f"{g['replicas']} is outside minReplicas..maxReplicas ({lo}..{hi})"))
    return out


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(path, pod spec) of every pod the object makes: head, worker groups, a RayJob's submitter."""
    cluster, where = _cluster_spec(doc)
    out = []
    if cluster:
        out.append((f"{where}.headGroupSpec.template.spec", cluster.get("headGroupSpec", {}).get("template", {}).get("spec", {})))
        for i, g in enumerate(cluster.get("workerGroupSpecs", [])):
            out.append((f"{where}.workerGroupSpecs[{i}].template.spec", g.get("template", {}).get("spec", {})))
    sub = doc.get("spec", {}).get("submitterPodTemplate") if doc.get("kind") == "RayJob" else None
    if sub:
        out.append(("spec.submitterPodTemplate.spec", sub.get("spec", {})))
    return out


def _non_root(pod: dict, container: dict) -> bool:
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    return bool(as_non_root) and user not in (None, 0) and sc.get("allowPrivilegeEscalation") is False


def policy_findings(doc: dict, image: str = "saerec") -> list[Finding]:
    """saerec's deployment policy for every container of every pod an object makes."""
    label, out = _label(doc), []
    for where, pod in pod_templates(doc):
        containers = pod.get("containers", [])
        if not containers:
            out.append(Finding(label, where, "no containers"))
        for j, (field, c) in enumerate([("containers", c) for c in containers] +
                                        [("initContainers", c) for c in pod.get("initContainers", [])]):
            at = f"{where}.{field}[{j if field == 'containers' else j - len(containers)}]"
            ref = str(c.get("image", ""))
            if ref.split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1] != image:
                out.append(Finding(label, f"{at}.image", f"'{ref}' is not the {image} image"))
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                lacking = [r for r in ("cpu", "memory") if r not in res.get(part, {})]
                if lacking:
                    out.append(Finding(label, f"{at}.resources.{part}", f"missing {', '.join(lacking)}"))
            if not _non_root(pod, c):
                out.append(Finding(label, f"{at}.securityContext", "must run as non-root: runAsNonRoot true, a "
                                   "non-zero runAsUser, allowPrivilegeEscalation false"))
    cluster, where = _cluster_spec(doc)
    if cluster:
        heads = cluster.get("headGroupSpec", {}).get("template", {}).get("spec", {}).get("containers") or []
        ports = {p.get("containerPort") for p in (heads[0].get("ports", []) if heads else [])}
        if heads and not HEAD_PORTS <= ports:           # no head container is reported above
            out.append(Finding(label, f"{where}.headGroupSpec.template.spec.containers[0].ports",
                               f"missing {sorted(HEAD_PORTS - ports)} (GCS, dashboard/jobs)"))
        opts = cluster.get("autoscalerOptions")
        if cluster.get("enableInTreeAutoscaling") and not (opts and opts.get("resources", {}).get("limits")
                                                              and opts.get("securityContext", {}).get("runAsNonRoot")):
            out.append(Finding(label, f"{where}.autoscalerOptions",
                               "the autoscaler sidecar needs resources.limits and a non-root securityContext"))
    if doc.get("kind") == "RayService":
        out += _serve_port_findings(doc)
    return out


def _serve_config(doc: dict) -> tuple[dict | None, str | None]:
    """A RayService's ``serveConfigV2`` parsed, or None and why not (one line: YAML's own errors span
    several, and the CLI prints one finding per line)."""
    try:
        conf = yaml.safe_load(doc.get("spec", {}).get("serveConfigV2", "")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, f"not valid YAML: {problem}" + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    if not isinstance(conf, dict):
        return None, f"must be a YAML mapping (a Serve config), got {type(conf).__name__}"
    return conf, None


def _serve_port_findings(doc: dict) -> list[Finding]:
    """The Serve config's HTTP and gRPC ports are container ports named so that KubeRay exposes them."""
    label, out = _label(doc), []
    conf = _serve_config(doc)[0]
    if conf is None:                     # unreadable: operator_findings says why
        return out
    want = {"serve": conf.get("http_options", {}).get("port", 8000)}
    if conf.get("grpc_options", {}).get("port"):
        want["serve-grpc"] = conf["grpc_options"]["port"]
    for i, g in enumerate(doc["spec"].get("rayClusterConfig", {}).get("workerGroupSpecs", [])):
        containers = g.get("template", {}).get("spec", {}).get("containers") or []
        if not containers:                   # reported as "no containers"
            continue
        ports = {p.get("name"): p.get("containerPort") for p in containers[0].get("ports", [])}
        for pname, port in want.items():
            if ports.get(pname) != port:
                out.append(Finding(label, f"spec.rayClusterConfig.workerGroupSpecs[{i}].template.spec.containers[0].ports",
                                   f"needs containerPort {port} named '{pname}' (the Serve config's port)"))
    return out


def validate(docs: list[dict], schema_dir: str | Path | None = None, policy: bool = True,
             kube_version: str = KUBE_VERSION) -> list[Finding]:
    """Every finding for the documents; an empty list means they are valid."""
    schema_dir = schema_dir or default_schema_dir()
    out = []
    for doc in docs:
        out += schema_findings(doc, schema_dir, kube_version) + operator_findings(doc)
        if policy:
            out += policy_findings(doc)
    gw = [d for d in docs if gateway.is_gateway(d)]
    if gw:
        confs = [_serve_config(d)[0] or {} for d in docs if d.get("kind") == "RayService"]
        ports = (confs[0].get("grpc_options", {}).get("port"), confs[0].get("http_options", {}).get("port", 8000)) \
            if confs else (None, None)
        models = gateway.models_dir()
        errors = (gateway.schema_errors(gw, models) if models else []) + gateway.cross_object_errors(gw, *ports)
        out += [Finding(_label(d), path, message) for d, path, message in errors]
    return out
