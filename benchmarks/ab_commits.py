"""One benchmark, two source trees, side by side: interleaved rounds, medians and paired ratios.

Why: "within noise of before the refactor" can only be judged when both versions run on the same
machine at the same time of day. This runs a benchmark command once per round in each tree
(``PYTHONPATH`` pointing at that tree, so its ``saerec`` is imported; working directory the tree),
alternating the order every round (A B, B A, A B, ...) so a slow spell of a shared machine hits
both, reads one number from each round's JSON, and writes the per-round values, each side's
median, the ratio of medians and the median of the per-round ratios B/A.

    git worktree add ../old <commit>
    python benchmarks/ab_commits.py --a ../old --b . --rounds 3 \\
        --metric results.saerec.tokens_per_second_median \\
        -- python benchmarks/train_throughput.py --rounds 1 --steps 30 --out {out}

``{out}`` in the command is replaced by a per-round JSON path; ``--metric`` is a dotted path into
that JSON (list indices allowed as numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def ratio(b: float, a: float) -> float | None:
    """b / a, or None when a is 0 (an error count that stayed 0 on both sides has no ratio).

    >>> ratio(3.0, 2.0), ratio(0, 0)
    (1.5, None)
    """
    return b / a if a else None


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def pick(doc, dotted: str):
    """Follow ``a.b.0.c`` into nested dicts/lists.

    >>> pick({"a": {"b": [{"c": 2.5}]}}, "a.b.0.c")
    2.5
    """
    for part in dotted.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def git_head(tree: Path) -> str:
    r = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def run_once(tree: Path, cmd: list[str], out: Path, metrics: list[str]) -> tuple[dict, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [a.replace("{out}", str(out)) for a in cmd]
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"ab_commits: {' '.join(argv)} in {tree} exited {r.returncode}:\n{r.stderr[-2000:]}")
    doc = json.loads(out.read_text())
    return {m: float(pick(doc, m)) for m in metrics}, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="baseline source tree (e.g. a git worktree of the previous commit)")
    ap.add_argument("--b", required=True, help="candidate source tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--metric", action="append", required=True, help="dotted JSON path; repeatable")
    ap.add_argument("--out", default="benchmarks/results/ab_commits.json")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the benchmark command, with {out}")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd or not any("{out}" in a for a in cmd):
        ap.error("give the benchmark command after --, with {out} where its JSON goes")
    trees = {"a": Path(args.a).resolve(), "b": Path(args.b).resolve()}
    rounds: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="ab_commits_"))
    for r in range(args.rounds):
        order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
        row = {"round": r, "order": order}
        for side in order:
            values, wall = run_once(trees[side], cmd, tmp / f"{side}{r}.json", args.metric)
            row[side] = values
            print(f"round {r + 1}/{args.rounds} {side}: "
                  + ", ".join(f"{m}={v:.4g}" for m, v in values.items()) + f" ({wall:.0f} s)", flush=True)
        rounds.append(row)
    summary = {}
    for m in args.metric:
        a = [row["a"][m] for row in rounds]
        b = [row["b"][m] for row in rounds]
        summary[m] = {"a_median": statistics.median(a), "b_median": statistics.median(b),
                      "ratio_of_medians_b_over_a": ratio(statistics.median(b), statistics.median(a)),
                      "median_paired_ratio_b_over_a": (statistics.median(r) if None not in (r := [ratio(y, x) for x, y in zip(a, b)])
                                                       else None)}
    out = {"benchmark": "ab_commits", "command": cmd, "rounds": rounds, "summary": summary,
           "a": {"tree": str(trees["a"]), "commit": git_head(trees["a"])},
           "b": {"tree": str(trees["b"]), "commit": git_head(trees["b"])},
           "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for m, s in summary.items():
        print(f"{m}: a {s['a_median']:.4g} ({out['a']['commit']}), b {s['b_median']:.4g} ({out['b']['commit']}), "
              f"b/a {fmt(s['ratio_of_medians_b_over_a'])} (paired median {fmt(s['median_paired_ratio_b_over_a'])})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
