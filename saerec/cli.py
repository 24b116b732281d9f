"""The ``saerec`` command line: one sub-command per pipeline stage, all over one run directory.

Usage errors and bad input exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from .config import RunConfig, apply_overrides
from .errors import SaerecError, UsageError
from .sae.base import KINDS

log = logging.getLogger("saerec")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str):  # noqa: D401
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--run", required=True, help="run directory (created if missing): a path, or a URI that "
                                                "pyarrow.fs opens (s3://, gs://, hdfs://, file://)")
    p.add_argument("--config", help="YAML config (sections data, split, model, train)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.epochs=20 (repeatable)")
    if data:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--data-dir", help="dataset folder (GroupLens layout or Parquet schema); always wins")
        g.add_argument("--dataset", help="dataset name: ml-1m (default), ml-20m, ml-100k, ml-latest-small, "
                                         "synthetic, or a folder name under SAEREC_DATA_DIR")


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-workers", type=int, help="Ray Train workers (default 1)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping on validation NDCG@10)")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")


def _history_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory with a recommender, SAE and interpretation")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--history", help="comma-separated item ids of the dataset, oldest first")
    g.add_argument("--user", type=int, help="a test user: their history up to the held-out item")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="saerec", description="Sparse autoencoders for sequential recommendation (GPTRec + SAE) on Ray.")
    p.add_argument("--log-level", default=os.environ.get("SAEREC_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sp = sub.add_parser("data", help="load, split and describe a dataset; writes RUN/data/")
    _common(sp)
    sp = sub.add_parser("train", help="train GPTRec on Ray Train and evaluate it; writes RUN/recommender/")
    _common(sp)
    _train_flags(sp)
    sp = sub.add_parser("import-model", help="write RUN/recommender/ from a model trained elsewhere (safetensors weights "
                                             "+ its item list) so every later stage works on it; see docs/models.md")
    _common(sp)
    sp.add_argument("--arch", help="sasrec, bert4rec, gptrec, or a factory package.module:function (model.arch)")
    sp.add_argument("--weights", required=True, help="the trained state dict as .safetensors")
    sp.add_argument("--items", required=True, help="the model's item ids in its index order: a JSON list or one per line")
    sp = sub.add_parser("evaluate", help="evaluate RUN's recommender on the test users (and popularity)")
    _common(sp, data=False)
    sp = sub.add_parser("run", help="the whole pipeline (data -> train + evaluate -> extract -> sae -> interpret "
                                    "-> steer-eval) over one run directory, with stage timings; finished stages whose "
                                    "config and input content are unchanged are skipped")
    _common(sp)
    _train_flags(sp)
    sp.add_argument("--force", action="store_true", help="rerun every stage")
    sp = sub.add_parser("extract", help="stream SAE-part and test users through GPTRec with Ray Data; "
                                        "writes RUN/activations/")
    _common(sp, data=False)
    sp.add_argument("--layer", help="hidden state to read: embed, block.0 (default), block.1, ..., final")
    sp = sub.add_parser("sae", help="train the SAE on RUN/activations with Ray Train and measure it; writes RUN/sae/")
    _common(sp, data=False)
    sp.add_argument("--kind", choices=KINDS, help="SAE kind (default relu)")
    sp = sub.add_parser("interpret", help="feature x attribute statistics, SAE vs neurons, feature catalog, "
                                          "plots and report; writes RUN/interpret/")
    _common(sp, data=False)
    sp = sub.add_parser("steer-eval", help="steering sweep for attributes' top SAE features and linear probes: genre "
                                           "shares, NDCG/HR/Coverage, diversity, plots; writes RUN/steer/")
    _common(sp, data=False)
    sp.add_argument("--attributes", help="comma-separated attributes (default Action,Children,Fantasy,Sci-Fi,Western)")
    sp.add_argument("--values", metavar="MIN:MAX:STEP", help="value grid (default -10:10:1)")
    sp.add_argument("--no-probe", action="store_true", help="skip the linear-probe comparison")
    sp.add_argument("--eval-positions", type=int, metavar="N",
                    help="next-item predictions per test user, its last N items (default 10; 1: the paper's last item only)")
    sp = sub.add_parser("steer", help="a case study: one history's top-k before and after steering edits")
    _history_flags(sp)
    sp.add_argument("--attribute", help="steer the attribute's top SAE feature (or its probe with --method probe)")
    sp.add_argument("--feature", type=int, help="steer this SAE feature id")
    sp.add_argument("--value", type=float, help="the value to set/add/scale by")
    sp.add_argument("--mode", default="set", help="set (default, the paper), add or scale")
    sp.add_argument("--positions", default="last", help="last (default, the paper) or all")
    sp.add_argument("--method", default="sae", help="sae (default) or probe")
    sp.add_argument("--edit", action="append", default=[], metavar="SPEC",
                    help="an edit [probe:]TARGET=[MODE:]VALUE[@last|@all], e.g. Sci-Fi=add:3 or 1572=2 (repeatable: "
                         "several edits at once, the equalizer)")
    sp.add_argument("--splice", default="delta", help="delta (default: keeps the SAE error) or reconstruction (the paper)")
    sp = sub.add_parser("explain", help="the SAE features behind one history's recommendations and their contributions")
    _history_flags(sp)
    sp.add_argument("--features", type=int, default=8, help="features to show (most active at the last step)")
    sp = sub.add_parser("features", help="the feature catalog: labels, correlation, firing frequency")
    sp.add_argument("--run", required=True, help="run directory")
    sp.add_argument("--attribute", help="only features labelled with this attribute")
    sp.add_argument("--limit", type=int, default=20)
    sp = sub.add_parser("serve", help="serve RUN as the gRPC Recommender on Ray Serve (Ray starts locally if needed)")
    sp.add_argument("--run", required=True, help="run directory with a recommender, SAE and interpretation")
    sp.add_argument("--port", type=int, default=9000, help="gRPC port (default 9000)")
    sp.add_argument("--http-port", type=int, default=8000, help="Serve's HTTP port, for health checks (default 8000)")
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
    sp.add_argument("--attribute", default="", help="features: only this attribute's features")
    sp.add_argument("--id", type=int, help="feature: the feature id")
    sp.add_argument("--limit", type=int, default=20, help="features: page size")
    sp.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds")
    sp = sub.add_parser("tune", help="Ray Tune over SAE L1 x dictionary size x kind x seeds on RUN's cached "
                                     "activations; writes RUN/tune/ (Table 1, Figure 3, Pareto plot)")
    _common(sp, data=False)
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
    return p


def resolve_config(args) -> RunConfig:
    """Base config (RUN/config.yaml if present, else --config, else defaults) + flags."""
    from .rundir import RunDir

    run = RunDir(args.run)
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise UsageError(f"--config {path}: no such file")
        cfg = RunConfig.load(path)
    elif (run.root / "config.yaml").exists():
        cfg = RunConfig.load(run.root / "config.yaml")
    else:
        cfg = RunConfig()
    apply_overrides(cfg, args.set)
    if getattr(args, "data_dir", None):
        cfg.data.data_dir, cfg.data.dataset = args.data_dir, Path(args.data_dir).name
    elif getattr(args, "dataset", None):
        cfg.data.dataset, cfg.data.data_dir = args.dataset, None
    for flag, key in (("num_workers", "num_workers"), ("epochs", "epochs"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(cfg.train, key, v)
    if getattr(args, "layer", None):
        cfg.activations.layer = args.layer
    if getattr(args, "kind", None):
        cfg.sae.kind = args.kind
    return cfg


def _table(rows: list[tuple[str, dict]], keys: list[str]) -> str:
    head = f"{'':<12}" + "".join(f"{k:>14}" for k in keys)
    lines = [head] + [f"{name:<12}" + "".join(f"{m.get(k, float('nan')):>14.4f}" for k in keys) for name, m in rows]
    return "\n".join(lines)


def cmd_data(args) -> int:
    from .data.prepare import prepare
    from .rundir import RunDir

    cfg = resolve_config(args)
    run = RunDir(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.root / "config.yaml")
    prep = prepare(run, cfg)
    print(json.dumps({k: v for k, v in prep.meta.items() if k != "val_users"}, indent=2))
    return 0


def cmd_train(args) -> int:
    from .data.prepare import prepare
    from .rundir import RunDir
    from .train.ray_train import train_recommender

    t0 = time.time()
    cfg = resolve_config(args)
    run = RunDir(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.root / "config.yaml")
    prep = prepare(run, cfg)
    _evaluate_and_report(run, cfg, prep, train_recommender(run, cfg, prep, resume=args.resume, t_start=t0))
    return 0


def cmd_import_model(args) -> int:
    from .eval.evaluate import evaluate_run
    from .model.importer import import_model
    from .rundir import RunDir

    if args.arch:
        args.set = [f"model.arch={args.arch}", *args.set]
    cfg = resolve_config(args)
    run = RunDir(args.run)
    summary = import_model(run, cfg, Path(args.weights), Path(args.items))
    cfg.save(run.root / "config.yaml")
    from .data.prepare import load_prepared
    metrics = {**evaluate_run(run, load_prepared(run), batch_size=cfg.train.eval_batch_size), "imported": summary}
    run.write_json("recommender/metrics.json", metrics)
    print(json.dumps(summary))
    _print_metrics(metrics)
    return 0


def _print_metrics(m: dict) -> None:
    keys = ["ndcg@10", "hit_rate@10", "mrr@10", "coverage@10"]
    print(_table([(m.get("arch", "model"), m), ("popularity", m["popularity"])], keys))


def cmd_evaluate(args) -> int:
    from .data.prepare import load_prepared
    from .eval.evaluate import evaluate_run
    from .rundir import RunDir

    run = RunDir(args.run)
    prep = load_prepared(run)
    metrics = run.read_json("recommender/metrics.json") if run.has("recommender/metrics.json") else {}
    metrics.update(evaluate_run(run, prep))
    run.write_json("recommender/metrics.json", metrics)
    _print_metrics(metrics)
    return 0


def _stage_run(args) -> tuple:
    from .rundir import RunDir

    run = RunDir(args.run)
    if not run.has("recommender/model.safetensors"):
        raise SaerecError(f"{run.recommender}: no trained recommender; run `saerec train --run {args.run}` first")
    cfg = resolve_config(args)
    cfg.save(run.root / "config.yaml")
    return run, cfg


def cmd_extract(args) -> int:
    from .sae.stage import extract_stage

    run, cfg = _stage_run(args)
    secs = extract_stage(run, cfg)
    print(f"activations of {cfg.activations.layer} written to {run.root / 'activations'} "
          + ", ".join(f"({p}: {s:.1f}s)" for p, s in secs.items()))
    return 0


def _print_sae(m: dict) -> None:
    print(f"SAE {m['sae']['kind']} x{m['sae']['n_latents']} on {m['layer']}: explained variance "
          f"{m['explained_variance']:.3f}, RMSE {m['rmse']:.3f}, L0 {m['l0']:.1f}, dead {m['dead_fraction']:.1%}")
    print(f"NDCG@10 original {m['ndcg@10_original']:.4f}, reconstructed {m['ndcg@10_reconstructed']:.4f}, "
          f"with error term {m['ndcg@10_error_term']:.4f} (identical: {m['error_term_identical_to_original']}); "
          f"{m['train_activations_per_second']:,.0f} activations/s")


def cmd_sae(args) -> int:
    from .sae.stage import extract_stage, sae_stage

    run, cfg = _stage_run(args)
    if not run.has("activations/meta.json"):
        extract_stage(run, cfg)
    _print_sae(sae_stage(run, cfg))
    return 0


def _print_interpret(s: dict) -> None:
    print(f"mean top-feature correlation over genres: SAE {s['mean_top_correlation_sae']:.3f} vs neurons "
          f"{s['mean_top_correlation_neurons']:.3f}")
    for r in s["attributes"][:8]:
        print(f"  {r['attribute']:<16} feature #{r['sae_feature']:<5} corr {r['sae_correlation']:.3f}  "
              f"AUC {r['sae_auc']:.3f}  (best neuron {r['neuron_correlation']:.3f})")


def cmd_interpret(args) -> int:
    from .interpret.stage import interpret_stage

    run, _ = _stage_run(args)
    if not run.has("sae/sae.safetensors"):
        raise SaerecError(f"{run.root / 'sae'}: no SAE; run `saerec sae --run {args.run}` first")
    _print_interpret(interpret_stage(run))
    print(f"wrote {run.root / 'interpret' / 'report.md'}")
    return 0


def _evaluate_and_report(run, cfg, prep, stats: dict) -> None:
    from .eval.evaluate import evaluate_run

    metrics = {**evaluate_run(run, prep, batch_size=cfg.train.eval_batch_size), **stats}
    run.write_json("recommender/metrics.json", metrics)
    _print_metrics(metrics)
    print(f"best checkpoint after {metrics['seconds_to_best_checkpoint']:.0f}s (epoch {metrics['best_epoch']}); "
          f"training {metrics['train_tokens_per_second']:,.0f} tokens/s; wrote {run.recommender / 'metrics.json'}")


def pipeline_stages(resume: bool = False) -> list:
    """The stages of `saerec run`, in order (see saerec/pipeline.py for how they are skipped)."""
    from .pipeline import Stage

    def data(run, cfg):
        from .data.prepare import prepare
        prepare(run, cfg, force=True)

    def train(run, cfg):
        from .data.prepare import load_prepared
        from .train.ray_train import train_recommender
        prep = load_prepared(run)
        _evaluate_and_report(run, cfg, prep, train_recommender(run, cfg, prep, resume=resume))

    def extract(run, cfg):
        from .sae.stage import extract_stage
        extract_stage(run, cfg)

    def sae(run, cfg):
        from .sae.stage import sae_stage
        _print_sae(sae_stage(run, cfg))

    def interpret(run, cfg):
        from .interpret.stage import interpret_stage
        _print_interpret(interpret_stage(run))

    def steer(run, cfg):
        from .steer.stage import steer_eval_stage
        _print_steer_eval(steer_eval_stage(run, cfg))

    D = ("data/interactions.parquet", "data/sequences.parquet", "data/items.parquet", "data/split.json")
    return [
        Stage("data", ("data", "split"), (), D, data),
        Stage("train", ("model", "train"), D, ("recommender/model.safetensors", "recommender/metrics.json"), train),
        Stage("extract", ("activations",), ("recommender/model.safetensors", "data/sequences.parquet"),
              ("activations/meta.json",), extract),
        Stage("sae", ("sae", "sae_train"), ("activations",), ("sae/sae.safetensors", "sae/metrics.json"), sae),
        Stage("interpret", (), ("sae/sae.safetensors", "activations/test", "recommender/items.parquet"),
              ("interpret/catalog.parquet", "interpret/summary.json"), interpret),
        Stage("steer", ("steer",), ("sae/sae.safetensors", "interpret/attributes.parquet", "interpret/catalog.parquet",
                                    "data/sequences.parquet"), ("steer/summary.json",), steer),
    ]


def cmd_run(args) -> int:
    from .pipeline import run_pipeline
    from .rundir import RunDir

    cfg = resolve_config(args)
    run = RunDir(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.root / "config.yaml")
    timings = run_pipeline(run, cfg, pipeline_stages(resume=args.resume), force=args.force)
    print("stage timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return 0


def cmd_download(args) -> int:
    from .data.download import GROUPLENS, download

    if args.name not in GROUPLENS:
        raise UsageError(f"download: unknown dataset '{args.name}' (known: {', '.join(sorted(GROUPLENS))})")
    print(download(args.name))
    return 0


def cmd_steer_eval(args) -> int:
    from .steer.stage import steer_eval_stage

    run, cfg = _stage_run(args)
    if args.attributes:
        cfg.steer.attributes = [a.strip() for a in args.attributes.split(",") if a.strip()]
    if args.values:
        try:
            cfg.steer.value_min, cfg.steer.value_max, cfg.steer.value_step = (float(x) for x in args.values.split(":"))
        except ValueError:
            raise UsageError(f"--values expects MIN:MAX:STEP, got {args.values!r}") from None
        if cfg.steer.value_step <= 0 or cfg.steer.value_max < cfg.steer.value_min:
            raise UsageError(f"--values {args.values}: need MIN <= MAX and STEP > 0")
    if args.no_probe:
        cfg.steer.probe = False
    if args.eval_positions is not None:
        cfg.steer.eval_positions = args.eval_positions
    _print_steer_eval(steer_eval_stage(run, cfg))
    print(f"wrote {run.root / 'steer' / 'report.md'}")
    return 0


def _print_steer_eval(s: dict) -> None:
    o = s["baselines"]["original"]
    print(f"steering sweep over {s['users']} test users ({s['points']} predictions): unsteered NDCG@10 "
          f"{o['ndcg@10']:.4f}; delta splice without "
          f"edits identical to the original: {s['delta_no_edit']['all_identical']}; sweep {s['seconds']['sweep']:.1f}s")
    for c in s["curve_checks"]:
        print(f"  {c['attribute']:<12} {c['curve']:<24} Spearman {c['spearman']:.3f}  share {c['unsteered_share']:.3f}"
              f" -> {c['share_at_5']:.3f} at +5 (x{c['lift']:.2f})  max NDCG drop |v|<=2 {c['max_ndcg_drop_abs_le_2']:.1%}"
              f"  [last item only: x{c['lift_last_item']:.2f}, {c['max_ndcg_drop_abs_le_2_last_item']:.1%}]")


def _item_ids(text: str) -> list[int]:
    """``--history 1,2,3``: dataset item ids, oldest first."""
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(f"--history expects comma-separated item ids, got {text!r}") from None


def _steerer_and_history(args):
    from .rundir import RunDir
    from .steer import Steerer

    run = RunDir(args.run)
    for rel, cmd in (("recommender/model.safetensors", "train"), ("sae/sae.safetensors", "sae")):
        if not run.has(rel):
            raise SaerecError(f"{run.root / rel} is missing; run `saerec {cmd} --run {args.run}` first")
    steerer = Steerer.from_run(run)
    if not 1 <= args.k <= 1000:
        raise UsageError(f"--k must be in 1..1000, got {args.k}")
    info: dict = {}
    if args.user is not None:
        from .data.prepare import load_prepared

        users, inputs, targets = load_prepared(run).eval_set("test", steerer.model.max_len)
        hit = np.flatnonzero(users == args.user)
        if not len(hit):
            raise UsageError(f"--user {args.user} is not a test user (test users: {len(users)}, "
                             f"e.g. {', '.join(map(str, users[:5]))})")
        history = inputs[hit[0]]
        info = {"user": args.user, "held_out_item": int(steerer.items.item_ids[targets[hit[0]] - 1])}
    else:
        history, unknown = steerer.items.to_index(_item_ids(args.history))
        if unknown:
            info["unknown_item_ids"] = unknown
            print(f"saerec: skipped {len(unknown)} item id(s) unknown to the model: {unknown[:10]}", file=sys.stderr)
        if not len(history):
            raise UsageError("--history has no item the model knows")
    if len(history) > steerer.model.max_len:
        info["truncated_to_most_recent"] = steerer.model.max_len
    return steerer, history, info


def _print_list(title: str, table, marks=None) -> None:
    print(title)
    for r, row in table.reset_index(drop=True).iterrows():
        mark = (marks[r] if marks is not None else " ")
        print(f" {mark}{r + 1:>3}. {str(row['title'])[:48]:<48} {row['genres']}")


def cmd_steer(args) -> int:
    from .steer import Edit, parse_edit

    steerer, history, info = _steerer_and_history(args)
    edits = [parse_edit(e) for e in args.edit]
    if args.attribute is not None or args.feature is not None:
        if args.attribute is not None and args.feature is not None:
            raise UsageError("give --attribute or --feature, not both")
        if args.value is None:
            raise UsageError("--attribute/--feature needs --value")
        target = args.attribute if args.attribute is not None else args.feature
        edits.insert(0, Edit(target, args.value, args.mode, args.positions, args.method))
    if not edits:
        raise UsageError("nothing to steer: give --attribute/--feature with --value, or --edit")
    resolved = steerer.resolve_all(edits)
    before = steerer.recommend([history], None, k=args.k)[0]
    after = steerer.recommend([history], [resolved], k=args.k, splice=args.splice)[0]
    b, a = steerer.items.describe(before), steerer.items.describe(after)
    if args.json:
        print(json.dumps({**info, "edits": [vars(e) for e in resolved], "splice": args.splice,
                          "before": b.to_dict(orient="records"), "after": a.to_dict(orient="records")}, default=str))
        return 0
    recent = steerer.items.describe(history[-3:])
    print(f"history: {len(history)} items; most recent: " + "; ".join(recent["title"].astype(str)))
    for e in resolved:
        print(f"edit: {e.label} -> {e.kind} {e.index}, {e.mode} {e.value:g} at {e.positions} ({args.splice} splice)")
    _print_list("before:", b)
    _print_list("after:", a, marks=["+" if x not in set(before) else " " for x in after])
    return 0


def cmd_explain(args) -> int:
    from .steer.explain import explain

    steerer, history, info = _steerer_and_history(args)
    if args.features < 1:
        raise UsageError(f"--features must be >= 1, got {args.features}")
    ex = explain(steerer, history, k=args.k, top_features=args.features)
    if args.json:
        print(json.dumps({**info, "features": ex.features.to_dict(orient="records"),
                          "items": ex.items.to_dict(orient="records"),
                          "contributions": ex.contributions.to_dict(orient="records"),
                          "direct_total": ex.direct_total.tolist()}, default=str))
        return 0
    print("most active features at the last step:")
    for _, f in ex.features.iterrows():
        print(f"  #{f['feature']:<5} {f['label']:<14} activation {f['activation']:.3f} "
              f"(label correlation {f['label_correlation']:.2f})")
    print("recommendations: score; per feature its direct contribution (and total effect through later blocks, "
          "i.e. the score lost when it is set to 0)")
    for r, it in ex.items.iterrows():
        c = ex.contributions[ex.contributions["rank"] == r + 1].sort_values("contribution", ascending=False)
        why = ", ".join(f"#{x.feature} {x.label} {x.contribution:+.2f} ({x.ablation_change:+.2f})"
                        for x in c.head(3).itertuples())
        print(f" {r + 1:>3}. {str(it['title'])[:44]:<44} {it['genres']:<32} {it['score']:6.2f}  {why}")
    return 0


def cmd_features(args) -> int:
    from .rundir import RunDir
    from .steer.catalog import FeatureCatalog

    cat = FeatureCatalog.load(RunDir(args.run))
    t = cat.table()
    if args.attribute:
        name = cat.canonical(args.attribute)
        print(f"top feature for {name}: #{cat.feature_for(name)}")
        t = t[t["label"] == name]
    print(t.head(args.limit).to_string(index=False))
    return 0


def cmd_serve(args) -> int:
    from ray import serve

    from .raycluster import ensure_ray
    from .rundir import RunDir
    from .serving.deployment import APP_NAME, ROUTE, app_builder, start_grpc
    from .storage import is_uri

    run = RunDir(args.run)
    for rel, cmd in (("recommender/model.safetensors", "train"), ("sae/sae.safetensors", "sae"),
                     ("interpret/catalog.parquet", "interpret")):
        if not run.has(rel):
            raise SaerecError(f"{run.root / rel} is missing; run `saerec {cmd} --run {args.run}` first")
    ensure_ray()                      # (a local runtime starts its workers at nice 0, see ensure_ray)
    start_grpc(args.port, args.http_port, args.host)
    # a remote run goes to the replicas as its URI: each pulls its own copy, on whichever node it runs
    served = args.run if is_uri(args.run) else str(run.root)
    serve.run(app_builder({"run": served, "replicas": args.replicas, "compile": args.compile}), name=APP_NAME, route_prefix=ROUTE)
    print(f"saerec.v1.Recommender serving {run.root} on gRPC port {args.port} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()


def _print_items(items) -> None:
    for r, it in enumerate(items):
        print(f" {r + 1:>3}. {it.item_id:>7}  {it.title[:48]:<48} {'|'.join(it.genres):<32} {it.score:8.3f}")


def cmd_client(args) -> int:
    import grpc

    from .serving.client import RecommenderClient

    def ids() -> list[int]:
        if not args.history:
            raise UsageError(f"client {args.action} needs --history")
        return _item_ids(args.history)

    with RecommenderClient(args.address, timeout=args.timeout) as c:
        try:
            if args.action == "recommend":
                r = c.recommend(ids(), k=args.k, steering=args.edit, exclude_seen=not args.include_seen)
                if r.unknown_item_ids:
                    print(f"unknown item ids skipped: {list(r.unknown_item_ids)}")
                if r.popularity_fallback:
                    print("no known item in the history: most popular items (unsteered)")
                for e in r.applied_steering:
                    print(f"steering: feature #{e.feature_id} ({e.label}) value {e.value:g}")
                _print_items(r.items)
                print(f"model {r.model_version}")
            elif args.action == "features":
                r = c.list_features(attribute=args.attribute, page_size=args.limit)
                for f in r.features:
                    print(f" #{f.feature_id:<5} {f.label:<16} corr {f.label_correlation:.3f}  AUC {f.label_auc:.3f}  "
                          f"firing {f.firing_frequency:.3f}{'  (top feature)' if f.top_feature_of_label else ''}")
                print(f"{len(r.features)} of {r.total}")
            elif args.action == "feature":
                if args.id is None:
                    raise UsageError("client feature needs --id")
                f = c.get_feature(args.id)
                print(f"#{f.feature_id} {f.label} (correlation {f.label_correlation:.3f}, AUC {f.label_auc:.3f}, "
                      f"firing {f.firing_frequency:.3f}, max {f.max_activation:.3f})")
                print("top-activating items:")
                _print_items(f.top_items)
                print("promoted items (score change when the feature is added):")
                _print_items(f.promoted_items)
            else:
                r = c.explain(ids(), k=args.k)
                for f in r.features:
                    print(f"  #{f.feature_id:<5} {f.label:<16} activation {f.activation:.3f}")
                for n, it in enumerate(r.items):
                    why = ", ".join(f"#{x.feature_id} {x.contribution:+.2f}" for x in
                                    sorted(it.contributions, key=lambda x: -x.contribution)[:3])
                    print(f" {n + 1:>3}. {it.item.title[:44]:<44} {'|'.join(it.item.genres):<30} {it.item.score:7.2f}  {why}")
        except grpc.RpcError as e:
            code = e.code()
            print(f"saerec: error: {code.name}: {e.details()}", file=sys.stderr)
            return 2 if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND) else 1
    return 0


def cmd_tune(args) -> int:
    from .tuning.experiment import TuneSpec, run_tune

    run, cfg = _stage_run(args)
    spec = TuneSpec.load(args.spec)
    df = run_tune(run, cfg, spec, name=args.name, resume=args.resume)
    s = run.read_json("tune/summary.json")
    print(f"{len(df)} trials ({s['errors']} errors) in {s['seconds']:.0f}s, {s['concurrent_trials']} at a time; "
          f"wrote {run.root / 'tune'}")
    from .tuning.experiment import table1
    t = table1(df)
    cols = [c for c in ("kind", "n_latents", "l1", "explained_variance_mean", "l0_mean", "dead_fraction_mean",
                        "ndcg@10_reconstructed_mean", "interpretability_mean", "interpretability_std") if c in t]
    print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_submit(args) -> int:
    from .submit import submit

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    env = {}
    for item in args.env:
        if "=" not in item:
            raise UsageError(f"--env expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    return submit(args.address, job, args.working_dir, args.requirements, env, wait=not args.no_wait)


def cmd_k8s(args) -> int:
    from .deploy import kustomize, serveconfig, validate

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


COMMANDS = {"data": cmd_data, "train": cmd_train, "import-model": cmd_import_model, "evaluate": cmd_evaluate, "run": cmd_run,
            "extract": cmd_extract, "sae": cmd_sae, "interpret": cmd_interpret, "steer-eval": cmd_steer_eval,
            "steer": cmd_steer, "explain": cmd_explain, "features": cmd_features, "serve": cmd_serve,
            "client": cmd_client, "tune": cmd_tune, "submit": cmd_submit, "download": cmd_download,
            "k8s": cmd_k8s}


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                            format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        if not args.command:
            parser.print_help()
            return 2
        from .storage import detach_all
        detach_all()                # every command pulls a remote run afresh
        rc = COMMANDS[args.command](args)
        if rc == 0:
            from .storage import push_all
            push_all()              # remote runs (--run URI): the local copy goes back to the URI
        return rc
    except SaerecError as e:
        print(f"saerec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saerec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
