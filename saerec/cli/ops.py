"""Operations: ``tune`` (Ray Tune over SAE settings), ``submit`` (a saerec command as a Ray job),
``download`` (a GroupLens dataset) and ``k8s`` (render, validate and sync the KubeRay manifests)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError
from .common import add_common, stage_run


def add_parsers(sub) -> None:
    sp = sub.add_parser("tune", help="Ray Tune over SAE L1 x dictionary size x kind x seeds on RUN's cached "
                                     "activations; writes RUN/tune/ (Table 1, Figure 3, Pareto plot)")
    add_common(sp, data=False)
    sp.add_argument("--spec", default="tune/sae_smoke.yaml", help="search space YAML (default tune/sae_smoke.yaml)")
    sp.add_argument("--name", default="sae_grid", help="experiment name under RUN/tune/ray/")
    sp.add_argument("--resume", action="store_true", help="continue an interrupted experiment of the same name")
    sp = sub.add_parser("submit", help="run a saerec command as a Ray job on a cluster and follow it: "
                                       "saerec submit [--address URL] -- run --run RUN ...")
    sp.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
                    or "http://127.0.0.1:8265", help="the cluster's dashboard/job address (default "
                    "$RAY_API_SERVER_ADDRESS, $RAY_ADDRESS or http://127.0.0.1:8265)")
    sp.add_argument("--working-dir", default=".", help="directory shipped with the job (default: here)")
    sp.add_argument("--requirements", help="pinned requirements file installed for the job (runtime_env pip)")
    sp.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable for the job")
    sp.add_argument("--no-wait", action="store_true", help="return after submitting")
    sp.add_argument("job", nargs=argparse.REMAINDER, help="the saerec command and its flags, after --")
    sp = sub.add_parser("download", help="download a GroupLens dataset into the cache (md5-checked)")
    sp.add_argument("name", help="ml-1m, ml-20m, ml-100k or ml-latest-small")
    sp = sub.add_parser("k8s", help="the KubeRay manifests in k8s/: render an overlay, validate overlays against "
                                    "the KubeRay CRD schemas and saerec's policy, sync the RayService's Serve config")
    sp.add_argument("action", choices=["render", "validate", "sync-serve"])
    sp.add_argument("overlays", nargs="*", help="kustomize folders (default: every folder under k8s/overlays)")
    sp.add_argument("--schemas", help="folder with KubeRay's CRD YAMLs (default $SAEREC_KUBERAY_SCHEMAS or "
                                      "../shared/schemas/kuberay)")
    sp.add_argument("--kube-version", default="1.33", help="Kubernetes version for the core schemas (default 1.33)")
    sp.add_argument("--no-policy", action="store_true", help="validate: schemas and operator rules only")
    sp.add_argument("--check", action="store_true", help="sync-serve: only compare; exit 1 if they differ")


def cmd_tune(args) -> int:
    from ..tuning.experiment import TuneSpec
    from ..tuning.stage import STAGE

    spec = TuneSpec.load(args.spec)                  # a bad spec fails before the run is touched
    run, cfg = stage_run(args)
    s = STAGE.run(run, cfg, spec=spec, name=args.name, resume=args.resume)
    print(f"{s['trials']} trials ({s['errors']} errors) in {s['seconds']:.0f}s, {s['concurrent_trials']} at a time; "
          f"wrote {run.root / 'tune'}")
    t = s["trials_table"]
    cols = [c for c in ("kind", "n_latents", "l1", "explained_variance_mean", "l0_mean", "dead_fraction_mean",
                        "ndcg@10_reconstructed_mean", "interpretability_mean", "interpretability_std") if c in t]
    print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_submit(args) -> int:
    from ..submit import submit

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    env = {}
    for item in args.env:
        if "=" not in item:
            raise UsageError(f"--env expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    return submit(args.address, job, args.working_dir, args.requirements, env, wait=not args.no_wait)


def cmd_download(args) -> int:
    from ..data.download import GROUPLENS, download

    if args.name not in GROUPLENS:
        raise UsageError(f"download: unknown dataset '{args.name}' (known: {', '.join(sorted(GROUPLENS))})")
    print(download(args.name))
    return 0


def cmd_k8s(args) -> int:
    from ..deploy import kustomize, serveconfig, validate

    if args.action == "sync-serve":
        serve, rayservice = Path("serve/config.yaml"), Path("k8s/base/rayservice.yaml")
        for path in (serve, rayservice):
            if not path.is_file():
                raise UsageError(f"k8s sync-serve: {path} not found (run it from the saerec checkout)")
        equal = serveconfig.sync(serve, rayservice, check=args.check)
        print(f"{rayservice}: serveConfigV2 " + ("equals " if equal else "differs from " if args.check else
                                                 "rewritten from ") + str(serve))
        return 1 if args.check and not equal else 0
    overlays = [Path(o) for o in args.overlays] or sorted(p for p in Path("k8s/overlays").glob("*") if p.is_dir())
    if not overlays:
        raise UsageError("k8s: no overlay given and no k8s/overlays/* here")
    if args.action == "render":
        if len(overlays) != 1:
            raise UsageError("k8s render: give exactly one overlay folder")
        print(kustomize.to_yaml(kustomize.render(overlays[0])), end="")
        return 0
    bad = 0
    for overlay in overlays:
        docs = kustomize.render(overlay)
        findings = validate.validate(docs, args.schemas, policy=not args.no_policy, kube_version=args.kube_version)
        for f in findings:
            print(f"{overlay}: {f}")
        if not findings:
            print(f"{overlay}: {len(docs)} objects valid ({', '.join(d['kind'] for d in docs)})")
        bad += len(findings)
    return 1 if bad else 0


COMMANDS = {"tune": cmd_tune, "submit": cmd_submit, "download": cmd_download, "k8s": cmd_k8s}
