"""fp32 vs bf16 autocast on the CPU (or a GPU): GPTRec training tokens/s and test NDCG@10, SAE
training activations/s and explained variance, and profiles of an fp32 and a bf16 training step. Ray-free
(plain torch over saerec's library code), so benchmarks/gpu_check.py reuses its pieces.

Data: the ML-20M-shaped synthetic log at ``--scale`` (default 0.01: 1,385 users, about 200k
interactions) or a ``--data-dir`` in any saerec format, split as the paper does. Throughput:
``--rounds`` interleaved rounds of ``--steps`` training steps per precision, the median. Quality:
per seed, ``--epochs`` epochs from the same initial weights in each precision, NDCG@10 of the test
users ranked in fp32 (as the pipeline does). SAE: activations of block.0 of the fp32 model on the
SAE part (``--sae-kind``), ``--sae-epochs`` epochs per precision in ``--sae-rounds`` interleaved
rounds, explained variance on the test users. Profiles: 5 training steps in each precision, the
ops side by side. Writes JSON.

    python benchmarks/precision_ab.py --seeds 0 1 2 --epochs 3
    python benchmarks/precision_ab.py --data-dir ../shared/data/ml-1m-users-1-2999 --seeds 0 1 2 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from saerec.config import RunConfig, apply_overrides
from saerec.data.sequences import ItemIndex, build_sequences, eval_pairs
from saerec.data.split import split
from saerec.eval.ranking import evaluate_model, recommend
from saerec.model.registry import build_model
from saerec.sae.base import SAEConfig, build_sae
from saerec.sae.normalize import NormStats
from saerec.sae.trainer import ReconStats, make_optimizer, train_steps
from saerec.train.batching import bucket_batches, make_windows
from saerec.train.budget import batch_tokens_for
from saerec.train.loop import train_epoch

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def load_data(cfg: RunConfig, data_dir: str | None, scale: float):
    """(windows, test inputs, test targets, sae-part sequences, n_items) of the paper's split."""
    from saerec.data.loaders import load_folder
    from saerec.data.paper_shape import PaperShapeConfig
    from saerec.data.synthetic import generate

    ds = load_folder(Path(data_dir)) if data_dir else generate(PaperShapeConfig.ml20m(scale, seed=0))
    sp = split(ds.interactions, cfg.split)
    index = ItemIndex.from_ids(sp.train()["item_id"])
    rec = build_sequences(sp.part("rec"), index)
    windows = make_windows(rec, cfg.model.max_len, cfg.train.windows)
    test_in, test_t = eval_pairs(build_sequences(sp.part("test"), index), cfg.model.max_len)
    sae_part = build_sequences(sp.part("sae"), index)
    return windows, test_in, test_t, sae_part, index.size, len(ds.interactions)


def train_rate(model, windows, cfg, dtype, steps, seed, device) -> float:
    """Tokens/s of ``steps`` training steps (after one warm-up step)."""
    lengths = np.array([len(w) - 1 for w in windows])
    batches = bucket_batches(lengths, batch_tokens_for(cfg.train, cfg.model, model.n_items, device),
                             np.random.default_rng(seed))[: steps + 1]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    train_epoch(model, opt, windows, batches[:1], cfg.train, device, dtype=dtype)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return train_epoch(model, opt, windows, batches[1:], cfg.train, device, dtype=dtype).tokens_per_second


def sae_activations(model, seqs, layer: str, max_rows: int) -> torch.Tensor:
    from saerec.activations.extract import block_activations

    out, n = [], 0
    for lo in range(0, len(seqs), 64):
        part = [seqs.get(i) for i in range(lo, min(lo + 64, len(seqs)))]
        part = [p for p in part if len(p)]
        if not part:
            continue
        a = block_activations(model.cpu(), np.arange(len(part)), part, layer)["activation"]
        out.append(torch.from_numpy(a))
        n += len(a)
        if n >= max_rows:
            break
    return torch.cat(out)[:max_rows]


def sae_run(x_train, x_test, dtype, epochs: int, seed: int, device, n_latents: int, kind: str = "relu",
            k: int = 32) -> dict:
    stats = NormStats("global")
    stats.update(x_train)
    norm = stats.finish()
    torch.manual_seed(seed)
    sae = build_sae(x_train.shape[1], SAEConfig(kind=kind, n_latents=n_latents, l1=0.05, k=k, seed=seed)).to(device)
    xt = norm(x_train).to(device)
    sae.init_from_sample(xt[:20_000])
    opt = make_optimizer(sae)
    t, rows = time.perf_counter(), 0
    for e in range(epochs):
        perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(seed * 100 + e)).to(device)
        rows += train_steps(sae, opt, xt[perm].split(4096), dtype=dtype)["rows"]
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t
    rs = ReconStats(n_latents)
    with torch.no_grad():
        xs = norm(x_test).to(device)
        out = sae.eval()(xs)
        rs.update(xs.cpu(), out.x_hat.float().cpu(), out.f.float().cpu())
    return {"activations_per_second": rows / secs, "explained_variance": rs.result()["explained_variance"]}


def profile_step(model, windows, cfg, dtype, device, top: int = 15) -> list[dict]:
    """Self CPU time per op over 5 training steps: where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    lengths = np.array([len(w) - 1 for w in windows])
    batches = bucket_batches(lengths, batch_tokens_for(cfg.train, cfg.model, model.n_items, device),
                             np.random.default_rng(0))[:6]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    train_epoch(model, opt, windows, batches[:1], cfg.train, device, dtype=dtype)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_epoch(model, opt, windows, batches[1:], cfg.train, device, dtype=dtype)
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / max(total, 1),
             "calls": e.count} for e in ev[:top]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--scale", type=float, default=0.01, help="ML-20M-shaped synthetic log: share of its users")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=1, help="training epochs per seed and precision for NDCG@10 (0: none)")
    ap.add_argument("--sae-epochs", type=int, default=2)
    ap.add_argument("--sae-rows", type=int, default=200_000)
    ap.add_argument("--sae-kind", default="relu", help="SAE kind of the A/B (relu: L1 0.05; topk: k 32)")
    ap.add_argument("--sae-rounds", type=int, default=3, help="interleaved SAE runs per precision")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. model.d_model=128")
    ap.add_argument("--out", default="benchmarks/results/precision_ab.json")
    args = ap.parse_args()
    cfg = apply_overrides(RunConfig(), args.set)
    t0 = time.time()
    windows, test_in, test_t, sae_part, n_items, n_int = load_data(cfg, args.data_dir, args.scale)
    print(f"data: {n_int:,} interactions, {len(windows):,} windows, {n_items:,} items, "
          f"{len(test_in):,} test users ({time.time() - t0:.0f}s)", flush=True)
    dev = args.device
    # throughput: the same initial weights, precisions interleaved round by round
    rates = {k: [] for k in DTYPES}
    for r in range(args.rounds):
        for name in (DTYPES if r % 2 == 0 else list(DTYPES)[::-1]):
            torch.manual_seed(0)
            model = build_model(cfg.model, n_items).to(dev)
            rates[name].append(train_rate(model, windows, cfg, DTYPES[name], args.steps, r, dev))
            print(f"round {r + 1}/{args.rounds} {name}: {rates[name][-1]:,.0f} tok/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    quality = {k: [] for k in DTYPES}
    fp32_model = None
    for seed in args.seeds if args.epochs > 0 else []:
        for name, dtype in DTYPES.items():
            torch.manual_seed(seed)
            model = build_model(cfg.model, n_items).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
            lengths = np.array([len(w) - 1 for w in windows])
            for e in range(args.epochs):
                batches = bucket_batches(lengths, batch_tokens_for(cfg.train, cfg.model, n_items, dev),
                                         np.random.default_rng([seed, e]))
                train_epoch(model, opt, windows, batches, cfg.train, dev, dtype=dtype)
            m = evaluate_model(model, test_in, test_t, device=dev)
            quality[name].append(m["ndcg@10"])
            print(f"seed {seed} {name}: NDCG@10 {m['ndcg@10']:.4f} after {args.epochs} epochs", flush=True)
            if name == "fp32" and fp32_model is None:
                fp32_model = model
    if fp32_model is None:
        torch.manual_seed(0)
        fp32_model = build_model(cfg.model, n_items)
    agree = None
    if len(test_in):
        a = recommend(fp32_model, test_in, device=dev)
        b = recommend(fp32_model, test_in, device=dev, dtype=torch.bfloat16)
        agree = {"identical_lists": float((a == b).all(1).mean()),
                 "same_sets": float(np.mean([set(x) == set(y) for x, y in zip(a, b)]))}
    x = sae_activations(fp32_model, sae_part, "block.0", args.sae_rows)
    n_test = max(len(x) // 10, 1)
    # interleaved rounds, as for GPTRec above: one SAE run per precision per round, order alternating
    sae_rounds = {k: [] for k in DTYPES}
    for r in range(args.sae_rounds):
        for name in (DTYPES if r % 2 == 0 else list(DTYPES)[::-1]):
            sae_rounds[name].append(sae_run(x[n_test:], x[:n_test], DTYPES[name], args.sae_epochs, 0, dev,
                                            8 * x.shape[1], args.sae_kind))
            print(f"sae round {r + 1}/{args.sae_rounds} {name}: "
                  f"{sae_rounds[name][-1]['activations_per_second']:,.0f} act/s", flush=True)
    sae = {name: {"activations_per_second": statistics.median(q["activations_per_second"] for q in runs),
                  "explained_variance": runs[0]["explained_variance"],
                  "rounds": [q["activations_per_second"] for q in runs]} for name, runs in sae_rounds.items()}
    sae_paired = statistics.median(b["activations_per_second"] / a["activations_per_second"]
                                   for a, b in zip(sae_rounds["fp32"], sae_rounds["bf16"]))
    prof = {}
    for name, dtype in DTYPES.items():          # the same steps in both: where bf16 gains and loses
        torch.manual_seed(0)
        prof[name] = profile_step(build_model(cfg.model, n_items).to(dev), windows, cfg, dtype, dev, top=25)
    report = {
        "benchmark": "precision_ab", "device": dev, "data": args.data_dir or f"ml-20m shape x {args.scale}",
        "interactions": n_int, "sets": args.set, "steps": args.steps, "rounds": args.rounds,
        "train_tokens_per_second": rates, "train_median": med, "train_speedup_bf16": med["bf16"] / med["fp32"],
        "ndcg@10": quality, "epochs": args.epochs,
        "ndcg@10_mean_diff_bf16_minus_fp32": (float(np.mean(quality["bf16"]) - np.mean(quality["fp32"]))
                                              if quality["fp32"] else None),
        "bf16_inference_top10_agreement": agree,
        "sae_kind": args.sae_kind, "sae": sae, "sae_speedup_bf16": sae["bf16"]["activations_per_second"] / sae["fp32"]["activations_per_second"],
        "sae_speedup_bf16_paired_median": sae_paired,
        "sae_ev_diff_bf16_minus_fp32": sae["bf16"]["explained_variance"] - sae["fp32"]["explained_variance"],
        "step_profile_top_ops": prof,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("train_median", "train_speedup_bf16", "ndcg@10_mean_diff_bf16_minus_fp32",
                                             "bf16_inference_top10_agreement", "sae_speedup_bf16",
                                             "sae_speedup_bf16_paired_median",
                                             "sae_ev_diff_bf16_minus_fp32")}, indent=2))
    fp32_ms = {p["op"]: p["self_ms"] for p in prof["fp32"]}
    print("5 steps, top ops of the bf16 step by self CPU time (fp32's time for the same op):")
    for p in prof["bf16"][:12]:
        ref = fp32_ms.get(p["op"])
        print(f"  {p['op']:<55} bf16 {p['self_ms']:8.1f} ms {100 * p['share']:5.1f}%   fp32 "
              + (f"{ref:8.1f} ms" if ref is not None else "  (not in its top 25)"))


if __name__ == "__main__":
    main()
