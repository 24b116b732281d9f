"""GPTRec training throughput on one worker: non-padding tokens per second, side by side.

Variants, all in one process on the same data (ML-1M users 1-2999, the recommender part of the
paper's split, default model 3 layers / 2 heads / hidden 64 / max length 200):

- ``saerec``: length-bucketed batches (token budget) + chunked full-softmax CE whose gradients are
  computed in the forward pass (the default)
- ``recompute_backward_ce``: same batches, the chunked CE before that change: its backward
  recomputes each chunk's logits (one more GEMM and exp per chunk)
- ``bucketed_plain_ce``: same batches, ``F.cross_entropy`` over the full logits matrix
- ``padded_unbucketed``: random batches of 32 windows padded to max length 200, plain CE
  (the naive loop the issue quotes at about 7-8k tokens/s)

Each variant runs ``--rounds`` rounds of ``--steps`` steps after warm-up, the variants' rounds
interleaved (so a slow spell of the machine hits all of them); the reported rate is the median
over rounds. Writes JSON (default benchmarks/results/train_throughput.json).

    python benchmarks/train_throughput.py --data-dir ../shared/data/ml-1m-users-1-2999
"""

from __future__ import annotations

import argparse
import copy
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
from saerec.train import loop, objective
from saerec.train.batching import bucket_batches, make_windows
from saerec.train.budget import batch_tokens_for


def padded_batches(n: int, rows: int, rng) -> list[np.ndarray]:
    perm = rng.permutation(n)
    return [perm[i: i + rows] for i in range(0, n, rows)]


def pad_to_max(windows, max_len):
    """Right-pad every window to max_len + 1 so collate produces full-length batches."""
    return [np.concatenate([w, np.zeros(max_len + 1 - len(w), dtype=w.dtype)]) if len(w) < max_len + 1 else w
            for w in windows]


class RecomputeBackwardCE(torch.autograd.Function):
    """The previous chunked CE, kept here as a baseline: forward stores only the log-sum-exp,
    backward recomputes every chunk's logits."""

    @staticmethod
    def forward(ctx, h, W, y, chunk):
        lse = torch.cat([torch.logsumexp(h[s: s + chunk] @ W.T, dim=1) for s in range(0, h.shape[0], chunk)])
        ctx.save_for_backward(h, W, y, lse)
        ctx.chunk = chunk
        return (lse - (h * W[y]).sum(-1)).mean()

    @staticmethod
    def backward(ctx, grad):
        h, W, y, lse = ctx.saved_tensors
        n, chunk = h.shape[0], ctx.chunk
        grad_h, grad_W = torch.empty_like(h), torch.zeros_like(W)
        for s in range(0, n, chunk):
            hc, yc = h[s: s + chunk], y[s: s + chunk]
            p = (hc @ W.T).sub_(lse[s: s + chunk, None]).exp_()
            p[torch.arange(len(yc)), yc] -= 1.0
            p.mul_(grad / n)
            grad_h[s: s + chunk] = p @ W
            grad_W.addmm_(p.T, hc)
        return grad_h, grad_W, None, None


def recompute_backward_ce(h, W, y, chunk=256):
    return RecomputeBackwardCE.apply(h, W, y - 1, chunk)


class Variant:
    """One training setup with its own model and optimizer; ``round`` trains a few steps."""

    def __init__(self, name, windows, n_items, cfg, batches_fn, ce_chunk, ce=None):
        torch.manual_seed(0)
        self.name, self.windows, self.batches_fn, self.ce = name, windows, batches_fn, ce
        self.cfg = copy.deepcopy(cfg)
        self.cfg.train.ce_chunk = ce_chunk
        self.model = GPTRec(cfg.model, n_items)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr)
        self.rng = np.random.default_rng(0)
        self.rates, self.pads = [], []

    def round(self, steps: int, record: bool) -> None:
        batches = self.batches_fn(self.rng)[:steps]
        original = objective.full_ce                 # the loss the training step calls (train/objective.py)
        objective.full_ce = self.ce or original
        try:
            st = loop.train_epoch(self.model, self.opt, self.windows, batches, self.cfg.train)
        finally:
            objective.full_ce = original
        if record:
            self.rates.append(st.tokens_per_second)
            self.pads.append(1 - st.tokens / st.padded)
        print(f"  {self.name}{'' if record else ' (warm-up)'}: {st.tokens_per_second:,.0f} tok/s, "
              f"padding {1 - st.tokens / st.padded:.1%}", flush=True)

    def result(self) -> dict:
        return {"tokens_per_second_median": statistics.median(self.rates), "tokens_per_second_rounds": self.rates,
                "padding_fraction": statistics.median(self.pads)}


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
    bt = batch_tokens_for(cfg.train, cfg.model, index.size, "cpu")
    bucketed = lambda rng: bucket_batches(lengths, bt, rng)  # noqa: E731
    variants = [
        Variant("saerec", windows, index.size, cfg, bucketed, cfg.train.ce_chunk),
        Variant("recompute_backward_ce", windows, index.size, cfg, bucketed, cfg.train.ce_chunk, recompute_backward_ce),
        Variant("bucketed_plain_ce", windows, index.size, cfg, bucketed, 0),
        Variant("padded_unbucketed", full, index.size, cfg, lambda rng: padded_batches(len(full), 32, rng), 0),
    ]
    for r in range(args.rounds + 1):
        print(f"round {r}{' (warm-up)' if r == 0 else ''}", flush=True)
        for v in variants:
            v.round(args.warmup if r == 0 else args.steps, record=r > 0)
    results = {v.name: v.result() for v in variants}
    base = results["padded_unbucketed"]["tokens_per_second_median"]
    out = {"benchmark": "gptrec_train_throughput", "dataset": Path(args.data_dir).name,
           "items": index.size, "windows": len(windows), "model": vars(cfg.model),
           "batch_tokens": bt, "threads": args.threads, "steps_per_round": args.steps, "rounds": args.rounds,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "results": results,
           "speedup_vs_padded_unbucketed": {k: v["tokens_per_second_median"] / base for k, v in results.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{'variant':<24}{'tokens/s (median)':>20}{'padding':>10}{'vs naive':>10}")
    for k, v in results.items():
        print(f"{k:<24}{v['tokens_per_second_median']:>20,.0f}{v['padding_fraction']:>10.1%}"
              f"{out['speedup_vs_padded_unbucketed'][k]:>9.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
