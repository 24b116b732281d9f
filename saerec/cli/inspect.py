"""Looking inside a trained run: ``steer`` (one history's top-k before and after edits), ``explain``
(the SAE features behind a history's recommendations) and ``features`` (the feature catalog)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import UsageError
from ..layout import A
from .common import item_ids, require


def _history_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run directory with a recommender, SAE and interpretation")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--history", help="comma-separated item ids of the dataset, oldest first")
    g.add_argument("--user", type=int, help="a test user: their history up to the held-out item")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def add_parsers(sub) -> None:
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
    sp = sub.add_parser("popsteer", help="popularity steering (PopSteer): features by effect size between synthetic "
                                         "popular-only and niche-only users, the long-tail/NDCG curve over alpha")
    sp.add_argument("--run", required=True, help="run directory with a recommender and an SAE")
    sp.add_argument("--alphas", default="0.5,1,1.5,2,3,4", help="comma-separated steering strengths (alpha 0 is added)")
    sp.add_argument("--top-n", type=int, help="steer only the N features with the largest |d| (default: all)")
    sp.add_argument("--users-per-group", type=int, default=500, help="synthetic users per group (default 500)")
    sp.add_argument("--length", type=int, default=50, help="items per synthetic history (default 50)")
    sp.add_argument("--eval-positions", type=int, default=10, help="last predictions per test user (default 10)")
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--no-references", action="store_true",
                    help="skip the SAE-free reference curves (head-penalty re-ranking, best constant state shift)")
    sp.add_argument("--penalties", help="per-user PopSteer: head penalties whose re-ranked lists the feature values "
                                        "are fitted to, in units of the median k-th probability (0 is added; "
                                        "default 0.25,0.5,0.75,1,1.25,1.5)")
    sp.add_argument("--no-per-user", action="store_true", help="skip per-user PopSteer (feature values fitted per user)")
    sp = sub.add_parser("features", help="the feature catalog: labels, correlation, firing frequency")
    sp.add_argument("--run", required=True, help="run directory")
    sp.add_argument("--attribute", help="only features labelled with this attribute")
    sp.add_argument("--limit", type=int, default=20)


def _steerer_and_history(args):
    from ..rundir import RunDir
    from ..steer import Steerer

    run = RunDir(args.run)
    require(run, args.run, A.WEIGHTS, A.SAE_WEIGHTS)
    steerer = Steerer.from_run(run)
    if not 1 <= args.k <= 1000:
        raise UsageError(f"--k must be in 1..1000, got {args.k}")
    info: dict = {}
    if args.user is not None:
        from ..model.checkpoint import test_pairs

        test = test_pairs(run, steerer.model.max_len)   # the test users only, not the log
        users, inputs, targets = test.users, test.inputs, test.targets
        hit = np.flatnonzero(users == args.user)
        if not len(hit):
            raise UsageError(f"--user {args.user} is not a test user (test users: {len(users)}, "
                             f"e.g. {', '.join(map(str, users[:5]))})")
        history = inputs[hit[0]]
        info = {"user": args.user, "held_out_item": int(steerer.items.item_ids[targets[hit[0]] - 1])}
    else:
        history, unknown = steerer.items.to_index(item_ids(args.history))
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
    from ..steer import Edit, parse_edit

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
    from ..steer.explain import explain

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
        conf = "" if np.isnan(f["label_confidence"]) else f", confidence {f['label_confidence']:.2f}"
        tops = f"; top items: {'; '.join(f['top_items'])}" if f["label"] == "unlabelled" and f["top_items"] else ""
        print(f"  #{f['feature']:<5} {f['label']:<14} activation {f['activation']:.3f} "
              f"(label correlation {f['label_correlation']:.2f}{conf}){tops}")
    print("recommendations: score; per feature its direct contribution (and total effect through later blocks, "
          "i.e. the score lost when it is set to 0)")
    for r, it in ex.items.iterrows():
        c = ex.contributions[ex.contributions["rank"] == r + 1].sort_values("contribution", ascending=False)
        why = ", ".join(f"#{x.feature} {x.label} {x.contribution:+.2f} ({x.ablation_change:+.2f})"
                        for x in c.head(3).itertuples())
        print(f" {r + 1:>3}. {str(it['title'])[:44]:<44} {it['genres']:<32} {it['score']:6.2f}  {why}")
    return 0


def cmd_features(args) -> int:
    from ..rundir import RunDir
    from ..steer.catalog import FeatureCatalog

    cat = FeatureCatalog.load(RunDir(args.run))
    t = cat.table()
    if args.attribute:
        name = cat.canonical(args.attribute)
        print(f"top feature for {name}: #{cat.feature_for(name)}")
        t = t[t["label"] == name]
    print(t.head(args.limit).to_string(index=False))
    return 0


def cmd_popsteer(args) -> int:
    from ..rundir import RunDir
    from ..steer.popfit import PerUserConfig
    from ..steer.popsteer import PopSteerConfig, popsteer_run

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise UsageError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from None
    if not alphas or any(not 0 <= a <= 100 for a in alphas):
        raise UsageError(f"--alphas must be numbers in 0..100, got {args.alphas!r}")
    try:
        penalties = (PerUserConfig.penalties if args.penalties is None
                     else tuple(float(a) for a in args.penalties.split(",") if a.strip()))
    except ValueError:
        raise UsageError(f"--penalties must be comma-separated numbers, got {args.penalties!r}") from None
    if not penalties or any(not 0 < a <= 100 for a in penalties):
        raise UsageError(f"--penalties must be numbers in (0, 100], got {args.penalties!r}")
    for flag, v in (("--users-per-group", args.users_per_group), ("--length", args.length),
                    ("--eval-positions", args.eval_positions), ("--k", args.k), ("--top-n", args.top_n or 1)):
        if v < 1:
            raise UsageError(f"{flag} must be >= 1, got {v}")
    run = RunDir(args.run)
    require(run, args.run, A.WEIGHTS, A.SAE_WEIGHTS, A.FEATURES)
    cfg = PopSteerConfig(users_per_group=args.users_per_group, length=args.length, top_n=args.top_n)
    per_user = None if args.no_per_user else PerUserConfig(penalties=penalties)
    s = popsteer_run(run, alphas, cfg, k=args.k, eval_positions=args.eval_positions,
                     references=not args.no_references, per_user=per_user)
    k = args.k
    cols = ["alpha", "features", f"ndcg@{k}", "ndcg_drop", f"long_tail@{k}", "long_tail_lift", f"gini@{k}",
            f"novelty@{k}", f"coverage@{k}"]
    print(s["table"][cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    lo, hi = s["ndcg_drop_ci95"]
    print(f"best alpha within a 10% NDCG@{k} drop: {s['best_alpha_within_10pct_ndcg']:g} (long-tail share "
          f"{s['long_tail_lift']:.2f}x, NDCG drop {s['ndcg_drop']:.1%} [95% {lo:.1%}, {hi:.1%}], Gini "
          f"{s['gini_unsteered']:.3f} -> {s['gini_at_best']:.3f}); wrote {run.path(A.POPSTEER_SUMMARY)}")
    if s.get("per_user"):
        r = s["per_user"]
        lo, hi = r["ndcg_drop_ci95"]
        print(f"per-user PopSteer (values fitted per user to the head penalty's lists): best penalty "
              f"{r['best_strength_within_10pct_ndcg']:g} within a 10% drop: long-tail share {r['long_tail_lift']:.2f}x, "
              f"NDCG drop {r['ndcg_drop']:.1%} [95% {lo:.1%}, {hi:.1%}], Gini {r['gini_at_best']:.3f} "
              f"(the curve: {run.path(A.POPSTEER_PER_USER)})")
    for method, r in (s.get("references") or {}).items():
        if isinstance(r, dict):
            lo, hi = r["ndcg_drop_ci95"]
            print(f"reference {method.replace('_', ' ')} (no SAE): best strength {r['best_strength_within_10pct_ndcg']:g} "
                  f"within a 10% drop: long-tail share {r['long_tail_lift']:.2f}x, NDCG drop {r['ndcg_drop']:.1%} "
                  f"[95% {lo:.1%}, {hi:.1%}]")
    if s.get("references"):
        print(f"  (a constant state shift fits head membership with R^2 {s['references']['shift_r2']:.2f}; "
              f"the table: {run.path(A.POPSTEER_REFERENCES)})")
    return 0


COMMANDS = {"steer": cmd_steer, "explain": cmd_explain, "features": cmd_features, "popsteer": cmd_popsteer}
