"""Compare two run directories number by number: every numeric leaf of each stage's summary JSON.

Why: "the refactor did not change any result" is a claim about every figure a run reports, not
one or two. This walks the JSON each stage writes (recommender metrics and per-epoch history, SAE
metrics, interpretation and steering summaries), skips timings and process ids (which differ from
run to run by nature), and prints how many numbers the two runs share and which differ. Keys only
one side has (a stage or field added later) are counted, not compared. Exit status 1 when a shared
number differs.

    python scripts/compare_runs.py OLD_RUN NEW_RUN
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FILES = ("recommender/metrics.json", "recommender/history.json", "sae/metrics.json",
         "interpret/summary.json", "steer/summary.json")
# timings, rates, process ids and weight digests differ between any two runs
VOLATILE = ("second", "per_s", "tokens_per", "activations_per", "pids", "time", "weights")


def leaves(obj, prefix: str = ""):
    """(dotted path, value) for every number or boolean in a JSON value.

    >>> dict(leaves({"a": {"b": 1.5}, "c": [True, "x"]}))
    {'a.b': 1.5, 'c[0]': True}
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{prefix}[{i}]")
    elif isinstance(obj, (bool, int, float)):
        yield prefix, obj


def compare(a: Path, b: Path, show: int = 15) -> int:
    differing = 0
    for name in FILES:
        if not (a / name).exists() or not (b / name).exists():
            print(f"{name}: missing in {'the first' if not (a / name).exists() else 'the second'} run")
            continue
        A = dict(leaves(json.loads((a / name).read_text())))
        B = dict(leaves(json.loads((b / name).read_text())))
        shared = [k for k in A if k in B and not any(v in k for v in VOLATILE)]
        diff = [k for k in shared if A[k] != B[k]]
        differing += len(diff)
        print(f"{name}: {len(shared)} shared numbers, {len(diff)} differ "
              f"(only in the first run: {len(set(A) - set(B))}, only in the second: {len(set(B) - set(A))})")
        for k in diff[:show]:
            print(f"    {k}: {A[k]} -> {B[k]}")
    return differing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    args = ap.parse_args()
    sys.exit(1 if compare(args.first, args.second) else 0)


if __name__ == "__main__":
    main()
