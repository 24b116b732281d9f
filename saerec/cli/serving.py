"""Serving: ``serve`` puts a run behind the gRPC Recommender on Ray Serve; ``client`` calls it;
``recommend`` runs the same scoring offline for many users (Ray Data)."""

from __future__ import annotations

import sys
import time

from ..errors import UsageError
from ..layout import A
from .common import item_ids, require


def add_parsers(sub) -> None:
    sp = sub.add_parser("serve", help="serve RUN as the gRPC Recommender on Ray Serve (Ray starts locally if needed)")
    sp.add_argument("--run", required=True, help="run directory with a recommender, SAE and interpretation")
    sp.add_argument("--port", type=int, default=9000, help="gRPC port (default 9000)")
    sp.add_argument("--http-port", type=int, default=8000, help="Serve's HTTP port: the JSON API (POST /saerec/v1/...) and health checks (default 8000)")
    sp.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    sp.add_argument("--replicas", type=int, default=1)
    sp.add_argument("--compile", action="store_true",
                    help="compile the scoring pass ahead of time (AOTInductor): faster requests, about a minute more "
                         "per replica start")
    sp = sub.add_parser("client", help="call a running saerec gRPC service: recommend, features, feature, explain")
    sp.add_argument("action", choices=["recommend", "features", "feature", "explain"])
    sp.add_argument("--address", default="localhost:9000", help="host:port of the service (default localhost:9000)")
    sp.add_argument("--history", help="comma-separated item ids, oldest first (recommend, explain)")
    sp.add_argument("--edit", action="append", default=[], metavar="SPEC",
                    help="steering edit TARGET=[MODE:]VALUE[@last|@all] (recommend; repeatable)")
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--include-seen", action="store_true", help="do not exclude the history's items")
    _add_rules(sp)
    sp.add_argument("--unsteered", action="store_true", help="recommend: also print the list without the edits")
    sp.add_argument("--token", help="shared auth token (default: $SAEREC_AUTH_TOKEN)")
    sp.add_argument("--attribute", default="", help="features: only this attribute's features")
    sp.add_argument("--id", type=int, help="feature: the feature id")
    sp.add_argument("--limit", type=int, default=20, help="features: page size")
    sp.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds")
    sp = sub.add_parser("recommend", help="offline batch recommendations: the service's scoring (steering, rules) for "
                                          "many users over a Ray Data actor pool, resumable; writes user_id, rank, "
                                          "item_id, score Parquet")
    sp.add_argument("--run", required=True, help="run directory with a recommender, SAE and interpretation")
    sp.add_argument("--users", default="test", help="test (default), all (RUN/data/sequences.parquet), or a Parquet "
                                                    "file with user_id and items (item ids, oldest first)")
    sp.add_argument("--out", required=True, help="output .parquet (written atomically; parts beside it until done)")
    sp.add_argument("--edit", action="append", default=[], metavar="SPEC",
                    help="steering edit TARGET=[MODE:]VALUE[@last|@all] (repeatable)")
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--include-seen", action="store_true", help="do not exclude the history's items")
    _add_rules(sp)
    sp.add_argument("--actors", type=int, default=1, help="model replicas in the Ray Data actor pool (default 1)")
    sp.add_argument("--batch-users", type=int, default=256, help="users per model batch (default 256)")
    sp.add_argument("--part-users", type=int, default=10_000,
                    help="users per resumable part file (default 10000)")
    sp.add_argument("--threads", type=int, default=1, help="torch threads (and CPUs) per actor (default 1)")


def _add_rules(sp) -> None:
    """The business-rule flags, shared by ``client recommend`` and ``recommend``."""
    sp.add_argument("--allow", help="comma-separated item ids, the only candidates")
    sp.add_argument("--deny", help="comma-separated item ids never to return")
    sp.add_argument("--include-attribute", action="append", default=[], metavar="ATTR",
                    help="every item must have ATTR (items.parquet, e.g. Comedy, decade:1990s; repeatable)")
    sp.add_argument("--exclude-attribute", action="append", default=[], metavar="ATTR",
                    help="no item may have ATTR (repeatable)")


def cmd_serve(args) -> int:
    from ray import serve

    from ..raycluster import ensure_ray
    from ..rundir import RunDir
    from ..serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc
    from ..storage import is_uri

    run = RunDir(args.run)
    require(run, args.run, A.WEIGHTS, A.SAE_WEIGHTS, A.FEATURES)
    ensure_ray()                      # (a local runtime starts its workers at nice 0, see ensure_ray)
    start_grpc(args.port, args.http_port, args.host)
    # a remote run goes to the replicas as its URI: each pulls its own copy, on whichever node it runs
    served = args.run if is_uri(args.run) else str(run.root)
    serve.run(app_builder({"run": served, "replicas": args.replicas, "compile": args.compile}), name=APP_NAME, route_prefix=ROUTE)
    print(f"saerec.v1.Recommender serving {run.root} on gRPC port {args.port}, JSON API on "
          f"http://{args.host}:{args.http_port}/saerec/v1/ (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()


def _print_items(items) -> None:
    for r, it in enumerate(items):
        print(f" {r + 1:>3}. {it.item_id:>7}  {it.title[:48]:<48} {'|'.join(it.genres):<32} {it.score:8.3f}")


def _rules(args) -> dict:
    return {"allow_items": item_ids(args.allow, "--allow") if args.allow else [],
            "deny_items": item_ids(args.deny, "--deny") if args.deny else [],
            "include_attributes": args.include_attribute, "exclude_attributes": args.exclude_attribute}


def cmd_recommend(args) -> int:
    from ..serving.offline import OfflineJob, recommend_offline

    for flag in ("k", "actors", "batch_users", "part_users", "threads"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    s = recommend_offline(OfflineJob(run=args.run, out=args.out, users=args.users, edits=args.edit, k=args.k,
                                     exclude_seen=not args.include_seen, rules=_rules(args), actors=args.actors,
                                     batch_users=args.batch_users, part_users=args.part_users, threads=args.threads))
    reused = f", {s['parts_reused']} finished parts reused" if s["parts_reused"] else ""
    print(f"{s['rows']:,} recommendations for {s['users']:,} users ({s['users_scored']:,} scored in {s['seconds']:.1f}s"
          f"{reused}) -> {s['out']}")
    return 0


def cmd_client(args) -> int:
    import grpc

    from ..serving.client import RecommenderClient

    def ids() -> list[int]:
        if not args.history:
            raise UsageError(f"client {args.action} needs --history")
        return item_ids(args.history)

    with RecommenderClient(args.address, timeout=args.timeout, token=args.token) as c:
        try:
            if args.action == "recommend":
                r = c.recommend(ids(), k=args.k, steering=args.edit, exclude_seen=not args.include_seen,
                                include_unsteered=args.unsteered, **_rules(args))
                if r.unknown_item_ids:
                    print(f"unknown item ids skipped: {list(r.unknown_item_ids)}")
                if r.popularity_fallback:
                    print("no known item in the history: most popular items (unsteered)")
                for e in r.applied_steering:
                    print(f"steering: feature #{e.feature_id} ({e.label}) value {e.value:g}")
                _print_items(r.items)
                if r.fewer_than_k:
                    print(f"fewer than {args.k} items: the rules left no more eligible")
                if args.unsteered:
                    print("unsteered:")
                    _print_items(r.unsteered_items)
                print(f"model {r.model_version}")
            elif args.action == "features":
                r = c.list_features(attribute=args.attribute, page_size=args.limit)
                for f in r.features:
                    print(f" #{f.feature_id:<5} {f.label:<16} corr {f.label_correlation:.3f}  AUC {f.label_auc:.3f}  "
                          f"{_conf(f)}firing {f.firing_frequency:.3f}{'  (top feature)' if f.top_feature_of_label else ''}")
                print(f"{len(r.features)} of {r.total}")
            elif args.action == "feature":
                if args.id is None:
                    raise UsageError("client feature needs --id")
                f = c.get_feature(args.id)
                print(f"#{f.feature_id} {f.label} (correlation {f.label_correlation:.3f}, AUC {f.label_auc:.3f}, "
                      f"{_conf(f, ', ')}firing {f.firing_frequency:.3f}, max {f.max_activation:.3f})")
                print("top-activating items:")
                _print_items(f.top_items)
                print("promoted items (score change when the feature is added):")
                _print_items(f.promoted_items)
            else:
                r = c.explain(ids(), k=args.k)
                for f in r.features:
                    print(f"  #{f.feature_id:<5} {f.label:<16} activation {f.activation:.3f}  {_conf(f)}")
                for n, it in enumerate(r.items):
                    why = ", ".join(f"#{x.feature_id} {x.contribution:+.2f}" for x in
                                    sorted(it.contributions, key=lambda x: -x.contribution)[:3])
                    print(f" {n + 1:>3}. {it.item.title[:44]:<44} {'|'.join(it.item.genres):<30} {it.item.score:7.2f}  {why}")
        except grpc.RpcError as e:
            code = e.code()
            print(f"saerec: error: {code.name}: {e.details()}", file=sys.stderr)
            return 2 if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                 grpc.StatusCode.UNAUTHENTICATED) else 1
    return 0


COMMANDS = {"serve": cmd_serve, "client": cmd_client, "recommend": cmd_recommend}


def _conf(f, sep: str = "  ") -> str:
    """``confidence 0.42`` + sep when the server sent a label confidence (after sae-eval), else nothing."""
    return f"confidence {f.label_confidence:.3f}{sep}" if f.HasField("label_confidence") else ""
