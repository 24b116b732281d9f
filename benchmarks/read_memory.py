"""Peak memory of what the train and evaluate stages read from ``RUN/data``, piece by piece (issue 21).

Each piece runs in a fresh process (``--piece``), so one piece's freed memory or loaded libraries
do not hide another's. Per piece: the growth of the process's peak RSS (``ru_maxrss``) over its RSS
after the imports, pyarrow's pool peak, and the seconds. Pieces:

- ``item_counts_rowgroup``: the index and rec-part counts read a row group (4,096 users) at a time,
  with pyarrow's default threads and pre-buffering (the code before issue 21's bounded reads);
  ``item_counts``: :func:`saerec.data.prepare.item_counts` now;
- ``test_read_table``: the test part via ``pq.read_table`` with a row filter (before);
  ``test_rowgroup``: via ``iter_batches`` of 4,096 users; ``test_read_sequences``: now;
- ``forward256``, ``forward64``: ``recommend`` over the test users with an untrained default GPTRec,
  256 and 64 rows per batch (what ``train.eval_batch_size`` sets);
- ``load_prepared``: the train stage's input from the whole log (``TrainInput.of(load_prepared(run))``);
  ``read_train_input``: from ``sequences.parquet`` now (the rec part read through once, batch by batch);
- ``windows_list``: the training windows as the driver held them before (the rec part's sequences,
  ``make_windows``' list of arrays and the flat copy it put in the object store; each worker then
  held its own list); ``windows_file``: :func:`saerec.train.windows.write_windows` from the rec part's
  512-user batches, then one worker's epoch of reads (every window once, through ``WindowFile``).

    python benchmarks/paper_scale.py --scales 0.01 0.1 --stages data --keep --workdir /tmp/ps
    python benchmarks/read_memory.py /tmp/ps/run_0.01 /tmp/ps/run_0.1 --out read_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PIECES = ("item_counts_rowgroup", "item_counts", "test_read_table", "test_rowgroup", "test_read_sequences",
          "forward256", "forward64", "load_prepared", "read_train_input", "windows_list", "windows_file")


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6


def rowgroup_batches(path, part: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for b in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["user_id", "part", "items"]):
        yield b.filter(pc.equal(b.column("part").cast(pa.string()), part))


def piece(run_path: str, name: str) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch  # noqa: F401  (loaded before the baseline, as in every stage)

    from saerec.config import RunConfig
    from saerec.data.prepare import item_counts, load_prepared, read_sequences
    from saerec.data.sequences import ItemIndex, eval_pairs
    from saerec.eval.ranking import recommend
    from saerec.model.registry import build_model
    from saerec.rundir import A, RunDir
    from saerec.train.inputs import TrainInput, read_train_input

    run = RunDir(run_path)
    if name.startswith("forward"):                     # the model's catalog: the rec and sae parts' items
        index = item_counts(run)[0]
    else:                                              # any index: the reads' memory does not depend on it
        index = ItemIndex.from_ids(pd.read_parquet(run.path(A.ITEMS), columns=["item_id"])["item_id"])
    before, t, out = rss_mb(), time.perf_counter(), {}
    if name == "item_counts_rowgroup":                 # item_counts as it was: the same merge, whole row groups
        ids, counts, train_ids = (np.zeros(0, np.int64) for _ in range(3))
        for b in pq.ParquetFile(run.path(A.SEQUENCES)).iter_batches(batch_size=4096, columns=["part", "items"]):
            part = b.column("part").cast(pa.string())
            for name_ in ("rec", "sae"):
                flat = pc.filter(b.column("items"), pc.equal(part, name_)).flatten().to_numpy()
                if name_ == "rec":
                    ids, inv = np.unique(np.concatenate([ids, flat]), return_inverse=True)
                    w = np.concatenate([counts, np.ones(len(flat), np.int64)])
                    counts = np.bincount(inv, weights=w, minlength=len(ids)).astype(np.int64)
                train_ids = np.union1d(train_ids, flat)
        out["items"] = len(train_ids)
    elif name == "item_counts":
        out["items"] = item_counts(run)[0].size
    elif name == "test_read_table":
        t_ = pq.read_table(run.path(A.SEQUENCES), columns=["user_id", "items"], filters=[("part", "=", "test")])
        out["test_items"] = len(t_.column("items").combine_chunks().flatten())
    elif name == "test_rowgroup":
        out["test_items"] = sum(len(b.column("items").flatten()) for b in rowgroup_batches(run.path(A.SEQUENCES), "test"))
    elif name == "test_read_sequences":
        out["test_items"] = len(read_sequences(run, "test", index).items)
    elif name.startswith("forward"):
        cfg = RunConfig().model
        inputs, _ = eval_pairs(read_sequences(run, "test", index), cfg.max_len)
        model = build_model(cfg, index.size)
        before, t = rss_mb(), time.perf_counter()
        recommend(model, inputs, k=10, batch_size=int(name.removeprefix("forward")))
        out.update(test_users=len(inputs), items=index.size)
    elif name in ("load_prepared", "read_train_input"):
        data = TrainInput.of(load_prepared(run)) if name == "load_prepared" else read_train_input(run)
        out["rec_tokens"] = sum(len(b.items) for b in data.rec_batches())
    else:
        windows_piece(run, name, out)
    return {**out, "seconds": time.perf_counter() - t, "pool_peak_mb": pa.default_memory_pool().max_memory() / 1e6,
            "peak_rss_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3 - before}


def windows_piece(run, name: str, out: dict) -> None:
    """The training windows of the default config (``train.windows: all``, ``model.max_len``)."""
    import shutil
    import tempfile

    import numpy as np

    from saerec.config import RunConfig
    from saerec.data.prepare import item_counts, read_sequences, sequence_batches
    from saerec.train.batching import make_windows
    from saerec.train.windows import WindowFile, write_windows

    cfg = RunConfig()
    index = item_counts(run)[0]
    if name == "windows_list":
        rec = read_sequences(run, "rec", index)
        windows = make_windows(rec, cfg.model.max_len, cfg.train.windows)
        flat = np.concatenate(windows).astype(np.int32)
        out.update(windows=len(windows), tokens=len(flat))
        return
    folder = tempfile.mkdtemp(prefix="read-memory-windows-")
    try:
        write_windows(sequence_batches(run, "rec", index), folder, cfg.model.max_len, cfg.train.windows, index.size)
        windows = WindowFile(folder)
        out.update(windows=len(windows), tokens=sum(len(windows[i]) for i in range(len(windows))))
        windows.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories with RUN/data (paper_scale.py --keep)")
    ap.add_argument("--pieces", nargs="+", choices=PIECES, default=list(PIECES))
    ap.add_argument("--piece", choices=PIECES, help=argparse.SUPPRESS)      # the child process
    ap.add_argument("--out", default="read_memory.json")
    args = ap.parse_args()
    if args.piece:
        print(json.dumps(piece(args.runs[0], args.piece)))
        return
    results = {}
    for run in args.runs:
        for name in args.pieces:
            p = subprocess.run([sys.executable, __file__, run, "--piece", name], capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"{run} {name}: {p.stderr[-2000:]}")
            results.setdefault(run, {})[name] = json.loads(p.stdout.strip().splitlines()[-1])
            print(run, name, results[run][name], flush=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "read_memory", "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
