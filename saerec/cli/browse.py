"""Looking at a run in the web browser and taking its SAE elsewhere: ``report --html`` (the feature
browser as a static folder), ``browse`` (the same site served with the JSON API and the steering
playground) and ``export --format saelens`` (the SAE in SAELens's on-disk layout)."""

from __future__ import annotations

import os
import time

from ..errors import SaerecError, UsageError

FORMATS = ("saelens",)


def add_parsers(sub) -> None:
    sp = sub.add_parser("report", help="the feature browser as a static site that opens from file:// "
                                       "(features, attributes, users; no server, no network)")
    sp.add_argument("--run", required=True, help="run directory through `saerec interpret`")
    sp.add_argument("--html", required=True, metavar="OUT", help="folder to write (new, empty, or an earlier site)")
    _site_flags(sp)
    sp = sub.add_parser("browse", help="serve the feature browser, the steering playground and the JSON API "
                                       "(POST /saerec/v1/recommend, recommend-batch, features, feature, explain)")
    sp.add_argument("--run", required=True, help="run directory through `saerec interpret`")
    sp.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 picks a free one)")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sp.add_argument("--rebuild", action="store_true", help="rebuild RUN/browse/ even when it is up to date")
    sp.add_argument("--service", metavar="URL", help="answer the JSON API (and the playground) from a running "
                                                     "`saerec serve` at URL (its HTTP port, e.g. http://127.0.0.1:8000) "
                                                     "instead of an in-process model")
    sp.add_argument("--token", help="with --service: its auth token (default: $SAEREC_AUTH_TOKEN)")
    _site_flags(sp)
    sp = sub.add_parser("export", help="write RUN's SAE in another library's on-disk layout (saelens)")
    sp.add_argument("--run", required=True, help="run directory with a trained SAE")
    sp.add_argument("--format", required=True, help="saelens: cfg.json, sae_weights.safetensors, sparsity.safetensors")
    sp.add_argument("out", metavar="OUT", help="folder to write")


def _site_flags(sp) -> None:
    sp.add_argument("--users", type=int, default=20, help="test users with a precomputed user page (default 20)")
    sp.add_argument("--bins", type=int, default=24, help="activation histogram bins per feature (default 24)")


def _check(args) -> None:
    if not 0 <= args.users <= 10_000:
        raise UsageError(f"--users must be in 0..10000, got {args.users}")
    if not 2 <= args.bins <= 200:
        raise UsageError(f"--bins must be in 2..200, got {args.bins}")


def cmd_report(args) -> int:
    from ..browse.data import check_run, site_data
    from ..browse.evaluation import images
    from ..browse.site import check_out, write_site
    from ..rundir import RunDir

    _check(args)
    check_out(args.html)
    run = RunDir(args.run)
    check_run(run)
    t = time.time()
    info = write_site(args.html, site_data(run, users=args.users, bins=args.bins), str(run.root), images(run))
    print(f"wrote {args.html}: {info['files']} files, {info['bytes'] / 1e6:.1f} MB, {info['features']} features "
          f"in {time.time() - t:.0f}s; open {args.html}/index.html (file:// works)")
    return 0


def cmd_browse(args) -> int:
    from ..browse.server import open_server
    from ..rundir import RunDir
    from ..serving.auth import TOKEN_ENV

    _check(args)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.token and not args.service:
        raise UsageError("--token goes with --service (the in-process API has no auth)")
    token = args.token or (os.environ.get(TOKEN_ENV) if args.service else None)
    server = open_server(RunDir(args.run), args.host, args.port, args.users, args.bins, args.rebuild,
                         service_url=args.service, token=token)
    host, port = server.server_address[:2]
    api = f"forwarded to {args.service}" if args.service else "POST /saerec/v1/..."
    print(f"saerec browse: http://{host}:{port}/ (playground: /playground.html, JSON API: {api}; "
          "Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def cmd_export(args) -> int:
    from ..layout import A
    from ..rundir import RunDir
    from ..sae.base import load_sae
    from ..sae.saelens import export_saelens

    if args.format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    run = RunDir(args.run)
    if not run.has(A.SAE_WEIGHTS):
        raise SaerecError(f"{run.path(A.SAE)}: no trained SAE; run `saerec sae --run {args.run}` first")
    sae, meta = load_sae(run.path(A.SAE))
    firing = None
    if run.has(A.FEATURES):
        firing = run.read_parquet(A.FEATURES).sort_values("feature")["firing_frequency"].to_numpy()
    cfg = export_saelens(sae, meta, args.out, firing, model_name=f"saerec:{run.root.name}")
    print(f"wrote {args.out}: SAELens {cfg['architecture']} SAE, d_in {cfg['d_in']}, d_sae {cfg['d_sae']} "
          f"(normaliser folded into the weights; load with sae_lens.SAE.load_from_disk)")
    return 0


COMMANDS = {"report": cmd_report, "browse": cmd_browse, "export": cmd_export}
