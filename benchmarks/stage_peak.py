"""One stage again on a kept run: wall time and peak PSS of its process tree, for A/B by stage.

`paper_scale.py --keep` leaves each scale's run directory behind. This script copies one of them
with hard links (`cp -al`: seconds, no extra disk for files the stage only reads), runs one `saerec`
command on the copy (`{run}` in the arguments stands for it) with `--code` first on PYTHONPATH (a
checkout of the tree under test, so two trees alternate on the same input), measures it as
`paper_scale.py` does (`streaming_scale.measure`: the largest total PSS over the command's whole
process tree, sampled every 0.2 s), appends one JSON line to `--out` and deletes the copy.

Why a copy: the stages rewrite their outputs, and a stage rerun in the kept run would change what
the next measurement reads. A stage that writes in place into a file it did not create would write
through the hard link; saerec's stages replace files (write elsewhere, then rename) or delete their
folder first. PSS splits shared pages among the processes that map them: another process from the
same installation (a test run, say) running beside the measurement lowers the figure, so run
nothing else from the same venv meanwhile.

    python benchmarks/stage_peak.py --run runs/ps/run_1 --label extract_1 -- extract --run {run}
    python benchmarks/stage_peak.py --run runs/ps/run_0.1 --code /tmp/old-tree --label extract_old -- extract --run {run}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_scale import measure  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: stage_peak.py --run RUN [--code TREE] [--label L] [--out FILE] -- SAEREC ARGS ({run} = the copy)")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a kept run directory (paper_scale.py --keep)")
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="the saerec tree to run")
    ap.add_argument("--label", default="stage")
    ap.add_argument("--out", default="benchmarks/results/stage_peak.jsonl")
    ap.add_argument("--copies", default=None, help="where the copy goes (default: beside the run)")
    args = ap.parse_args(argv[:cut])
    run = Path(args.run).resolve()
    copy = Path(args.copies or run.parent / "copies").resolve() / args.label
    if copy.exists():
        shutil.rmtree(copy)
    copy.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(run), str(copy)], check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join([args.code, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "saerec", *[a.replace("{run}", str(copy)) for a in argv[cut + 1:]]]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        r = measure(cmd, out.with_name(f"{args.label}.log"))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    r.update(label=args.label, code=args.code, command=" ".join(cmd), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(json.dumps(r), flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(r) + "\n")
    return r


if __name__ == "__main__":
    main()
