"""GPTRec training throughput on one worker: non-padding tokens per second, side by side.

Variants, all in one process on the same data (ML-1M users 1-2999, the recommender part of the
paper's split, default model 3 layers / 2 heads / hidden 64 / max length 200):

- ``saerec``: length-bucketed batches (token budget) + chunked fused full-softmax CE (the default)
- ``bucketed_plain_ce``: same batches, ``F.cross_entropy`` over the full logits matrix
- ``padded_unbucketed``: random batches of 32 windows padded to max length 200, plain CE
  (the naive loop the issue quotes at about 7-8k tokens/s)

Each variant runs ``--rounds`` rounds of ``--steps`` steps after warm-up; the reported rate is the
median over rounds. Writes JSON (default benchmarks/results/train_throughput.json).

    python benchmarks/train_throughput.py --data-dir ../shared/data/ml-1m-users-1-2999
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from saerec.config import RunConfig
from saerec.data.loaders import load_folder
from saerec.data.sequences import ItemIndex, build_sequences
from saerec.data.split import split
from saerec.model import GPTRec
from saerec.train.batching import bucket_batches, make_windows
from saerec.train.loop import train_epoch


def padded_batches(n: int, rows: int, rng) -> list[np.ndarray]:
    perm = rng.permutation(n)
    return [perm[i: i + rows] for i in range(0, n, rows)]


def pad_to_max(windows, max_len):
    """Right-pad every window to max_len + 1 so collate produces full-length batches."""
    return [np.concatenate([w, np.zeros(max_len + 1 - len(w), dtype=w.dtype)]) if len(w) < max_len + 1 else w
            for w in windows]


def run_variant(name, windows, lengths, n_items, cfg, steps, rounds, warmup, batches_fn, ce_chunk):
    torch.manual_seed(0)
    model = GPTRec(cfg.model, n_items)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    cfg.train.ce_chunk = ce_chunk
    rng = np.random.default_rng(0)
    rates, pads = [], []
    for r in range(rounds + 1):
        batches = batches_fn(rng)[: (warmup if r == 0 else steps)]
        st = train_epoch(model, opt, windows, batches, cfg.train)
        if r > 0:
            rates.append(st.tokens_per_second)
            pads.append(1 - st.tokens / st.padded)
        print(f"  {name} round {r}{' (warm-up)' if r == 0 else ''}: {st.tokens_per_second:,.0f} tok/s, "
              f"padding {1 - st.tokens / st.padded:.1%}", flush=True)
    return {"tokens_per_second_median": statistics.median(rates), "tokens_per_second_rounds": rates,
            "padding_fraction": statistics.median(pads)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("SAEREC_DATA_DIR", "../shared/data"),
                                                       "ml-1m-users-1-2999"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = RunConfig()
    ds = load_folder(args.data_dir)
    sp = split(ds.interactions, cfg.split)
    index = ItemIndex.from_ids(sp.train()["item_id"])
    seqs = build_sequences(sp.part("rec"), index)
    windows = make_windows(seqs, cfg.model.max_len, cfg.train.windows)
    lengths = np.array([len(w) - 1 for w in windows])
    full = pad_to_max(windows, cfg.model.max_len)
    bt = cfg.train.batch_tokens
    variants = {
        "saerec": (windows, lambda rng: bucket_batches(lengths, bt, rng), cfg.train.ce_chunk),
        "bucketed_plain_ce": (windows, lambda rng: bucket_batches(lengths, bt, rng), 0),
        "padded_unbucketed": (full, lambda rng: padded_batches(len(full), 32, rng), 0),
    }
    results = {}
    for name, (ws, fn, chunk) in variants.items():
        results[name] = run_variant(name, ws, lengths, index.size, cfg, args.steps, args.rounds, args.warmup,
                                    fn, chunk)
    base = results["padded_unbucketed"]["tokens_per_second_median"]
    out = {"benchmark": "gptrec_train_throughput", "dataset": Path(args.data_dir).name,
           "items": index.size, "windows": len(windows), "model": vars(cfg.model),
           "batch_tokens": bt, "threads": args.threads, "steps_per_round": args.steps, "rounds": args.rounds,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "results": results,
           "speedup_vs_padded_unbucketed": {k: v["tokens_per_second_median"] / base for k, v in results.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{'variant':<20}{'tokens/s (median)':>20}{'padding':>10}{'vs naive':>10}")
    for k, v in results.items():
        print(f"{k:<20}{v['tokens_per_second_median']:>20,.0f}{v['padding_fraction']:>10.1%}"
              f"{out['speedup_vs_padded_unbucketed'][k]:>9.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
