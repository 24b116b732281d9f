"""The pipeline-stage commands (data, train, import-model, evaluate, run, extract, sae, interpret,
steer-eval) and the printers of their summaries; the stages themselves are in saerec/pipeline.py."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import SaerecError, UsageError
from ..sae.base import KINDS
from ..layout import A
from .common import add_common, resolve_config, stage_run, table
from .suite import print_sae_eval


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-workers", type=int, help="Ray Train workers (default 1)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping on validation NDCG@10)")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its last checkpoint")


def add_parsers(sub) -> None:
    sp = sub.add_parser("data", help="load, split and describe a dataset; writes RUN/data/")
    add_common(sp)
    sp = sub.add_parser("train", help="train GPTRec on Ray Train and evaluate it; writes RUN/recommender/")
    add_common(sp)
    _train_flags(sp)
    sp = sub.add_parser("import-model", help="write RUN/recommender/ from a model trained elsewhere (safetensors weights "
                                             "+ its item list) so every later stage works on it; see docs/models.md")
    add_common(sp)
    sp.add_argument("--arch", help="sasrec, bert4rec, gptrec, or a factory package.module:function (model.arch)")
    sp.add_argument("--weights", required=True, help="the trained state dict as .safetensors")
    sp.add_argument("--items", required=True, help="the model's item ids in its index order: a JSON list or one per line")
    sp = sub.add_parser("evaluate", help="evaluate RUN's recommender on the test users (and popularity)")
    add_common(sp, data=False)
    sp = sub.add_parser("run", help="the whole pipeline (data -> train + evaluate -> extract -> sae -> interpret "
                                    "-> steer-eval -> sae-eval) over one run directory, with stage timings; finished stages whose "
                                    "config and input content are unchanged are skipped")
    add_common(sp)
    _train_flags(sp)
    sp.add_argument("--force", action="store_true", help="rerun every stage")
    sp = sub.add_parser("extract", help="stream SAE-part and test users through GPTRec with Ray Data; "
                                        "writes RUN/activations/")
    add_common(sp, data=False)
    sp.add_argument("--layer", help="hidden state to read: embed, block.0 (default), block.1, ..., final")
    sp = sub.add_parser("sae", help="train the SAE on RUN/activations with Ray Train and measure it; writes RUN/sae/")
    add_common(sp, data=False)
    sp.add_argument("--kind", choices=KINDS, help="SAE kind (default relu)")
    sp = sub.add_parser("interpret", help="feature x attribute statistics, SAE vs neurons, feature catalog, "
                                          "plots and report; writes RUN/interpret/")
    add_common(sp, data=False)
    sp = sub.add_parser("steer-eval", help="steering sweep for attributes' top SAE features and linear probes: genre "
                                           "shares, NDCG/HR/Coverage, diversity, plots; writes RUN/steer/")
    add_common(sp, data=False)
    sp.add_argument("--attributes", help="comma-separated attributes (default Action,Children,Fantasy,Sci-Fi,Western)")
    sp.add_argument("--values", metavar="MIN:MAX:STEP", help="value grid (default -10:10:1)")
    sp.add_argument("--no-probe", action="store_true", help="skip the linear-probe comparison")
    sp.add_argument("--eval-positions", type=int, metavar="N",
                    help="next-item predictions per test user, its last N items (default 10; 1: the paper's last item only)")


# ---------------------------------------------------------------- printers

def print_metrics(m: dict) -> None:
    keys = ["ndcg@10", "hit_rate@10", "mrr@10", "coverage@10"]
    print(table([(m.get("arch", "model"), m), ("popularity", m["popularity"])], keys))


def print_train(run, metrics: dict) -> None:
    print_metrics(metrics)
    print(f"best checkpoint after {metrics['seconds_to_best_checkpoint']:.0f}s (epoch {metrics['best_epoch']}); "
          f"training {metrics['train_tokens_per_second']:,.0f} tokens/s; wrote {run.recommender / 'metrics.json'}")


def print_sae(m: dict) -> None:
    print(f"SAE {m['sae']['kind']} x{m['sae']['n_latents']} on {m['layer']}: explained variance "
          f"{m['explained_variance']:.3f}, RMSE {m['rmse']:.3f}, L0 {m['l0']:.1f}, dead {m['dead_fraction']:.1%}")
    print(f"NDCG@10 original {m['ndcg@10_original']:.4f}, reconstructed {m['ndcg@10_reconstructed']:.4f}, "
          f"with error term {m['ndcg@10_error_term']:.4f} (identical: {m['error_term_identical_to_original']}); "
          f"{m['train_activations_per_second']:,.0f} activations/s")


def print_interpret(s: dict) -> None:
    print(f"mean top-feature correlation over genres: SAE {s['mean_top_correlation_sae']:.3f} vs neurons "
          f"{s['mean_top_correlation_neurons']:.3f}")
    for r in s["attributes"][:8]:
        print(f"  {r['attribute']:<16} feature #{r['sae_feature']:<5} corr {r['sae_correlation']:.3f}  "
              f"AUC {r['sae_auc']:.3f}  (best neuron {r['neuron_correlation']:.3f})")


def print_steer_eval(s: dict) -> None:
    o = s["baselines"]["original"]
    print(f"steering sweep over {s['users']} test users ({s['points']} predictions): unsteered NDCG@10 "
          f"{o['ndcg@10']:.4f}; delta splice without "
          f"edits identical to the original: {s['delta_no_edit']['all_identical']}; sweep {s['seconds']['sweep']:.1f}s")
    for c in s["curve_checks"]:
        print(f"  {c['attribute']:<12} {c['curve']:<24} Spearman {c['spearman']:.3f}  share {c['unsteered_share']:.3f}"
              f" -> {c['share_at_5']:.3f} at +5 (x{c['lift']:.2f})  max NDCG drop |v|<=2 {c['max_ndcg_drop_abs_le_2']:.1%}"
              f"  [last item only: x{c['lift_last_item']:.2f}, {c['max_ndcg_drop_abs_le_2_last_item']:.1%}]")


# ---------------------------------------------------------------- commands

def _new_run(args) -> tuple:
    """The run (created) and its resolved config, saved as RUN/config.yaml."""
    from ..rundir import RunDir

    cfg = resolve_config(args)
    run = RunDir(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    cfg.save(run.path(A.CONFIG))
    return run, cfg


def cmd_data(args) -> int:
    from ..data.prepare import prepare_files

    run, cfg = _new_run(args)
    meta = prepare_files(run, cfg)                # streamed: the log is never loaded whole
    print(json.dumps({k: v for k, v in meta.items() if k != "val_users"}, indent=2))
    return 0


def cmd_train(args) -> int:
    from ..data.prepare import prepare_files
    from ..train.stage import train_and_evaluate

    t0 = time.time()
    run, cfg = _new_run(args)
    prepare_files(run, cfg)              # streamed, or reused as is; training reads it in bounded batches
    print_train(run, train_and_evaluate(run, cfg, resume=args.resume, t_start=t0))
    return 0


def cmd_import_model(args) -> int:
    from ..model.importer import import_model
    from ..train.stage import record_metrics
    from ..rundir import RunDir

    if args.arch:
        args.set = [f"model.arch={args.arch}", *args.set]
    cfg = resolve_config(args)
    run = RunDir(args.run)
    summary = import_model(run, cfg, Path(args.weights), Path(args.items))
    cfg.save(run.path(A.CONFIG))
    metrics = record_metrics(run, cfg, {"imported": summary})
    print(json.dumps(summary))
    print_metrics(metrics)
    return 0


def cmd_evaluate(args) -> int:
    from ..eval.evaluate import evaluate_run
    from ..rundir import RunDir

    run = RunDir(args.run)
    metrics = run.read_json(A.REC_METRICS) if run.has(A.REC_METRICS) else {}
    metrics.update(evaluate_run(run))
    run.write_json(A.REC_METRICS, metrics)
    print_metrics(metrics)
    return 0


def cmd_run(args) -> int:
    from ..pipeline import pipeline_stages, run_pipeline

    run, cfg = _new_run(args)
    report = {"train": lambda m: print_train(run, m), "sae": print_sae, "interpret": print_interpret,
              "steer": print_steer_eval, "saeeval": print_sae_eval}
    timings = run_pipeline(run, cfg, pipeline_stages(resume=args.resume), force=args.force, report=report)
    print("stage timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return 0


def cmd_extract(args) -> int:
    from ..activations.stage import extract_stage

    run, cfg = stage_run(args)
    secs = extract_stage(run, cfg)
    print(f"activations of {cfg.activations.layer} written to {run.path(A.ACTIVATIONS)} "
          + ", ".join(f"({p}: {s:.1f}s)" for p, s in secs.items()))
    return 0


def cmd_sae(args) -> int:
    from ..activations.stage import extract_stage
    from ..sae.stage import sae_stage

    run, cfg = stage_run(args)
    if not run.has(A.ACT_META):
        extract_stage(run, cfg)
    print_sae(sae_stage(run, cfg))
    return 0


def cmd_interpret(args) -> int:
    from ..interpret.stage import interpret_stage

    run, _ = stage_run(args)
    if not run.has(A.SAE_WEIGHTS):
        raise SaerecError(f"{run.path(A.SAE)}: no SAE; run `saerec sae --run {args.run}` first")
    print_interpret(interpret_stage(run))
    print(f"wrote {run.root / 'interpret' / 'report.md'}")
    return 0


def cmd_steer_eval(args) -> int:
    from ..steer.stage import steer_eval_stage

    run, cfg = stage_run(args)
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
    print_steer_eval(steer_eval_stage(run, cfg))
    print(f"wrote {run.root / 'steer' / 'report.md'}")
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "import-model": cmd_import_model, "evaluate": cmd_evaluate,
            "run": cmd_run, "extract": cmd_extract, "sae": cmd_sae, "interpret": cmd_interpret,
            "steer-eval": cmd_steer_eval}
