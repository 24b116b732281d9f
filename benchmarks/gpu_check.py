"""The GPU check's Python part (``benchmarks/gpu_check.sh`` runs it): saerec's Ray-free library code on
one device, on the ML-20M-shaped synthetic log, writing one JSON. Ray is blocked at import (a
``sys.meta_path`` finder that raises): the GPU machine has no Ray, and a run here proves every
module it touches imports without it.

Steps, each timed, the JSON rewritten after each (a timeout still leaves the finished ones):
1. data: ``prepare`` on ``--scale`` of ML-20M's users (1.0 on a GPU: about 20M interactions), into a
   run directory;
2. train_throughput: GPTRec training tokens/s in fp32 and bf16 autocast, ``--steps`` steps each after
   a warm-up step, at each ``--batch-tokens`` budget (benchmarks/precision_ab.py's ``train_rate``);
3. train: ``--train-seconds`` of training (``train.precision: auto``), saved as RUN/recommender;
4. evaluate: the streamed test-set evaluation (``saerec.eval.evaluate.evaluate_run``) on the device;
5. recommend: in-process top-10 latency for one history (p50/p99 over ``--latency-calls``) and batched
   throughput (users/s at batch 256) for the test users, fp32 and bf16, the model on the device;
6. extract: block.0 activations of SAE-part users (``saerec.activations.extract``) up to ``--sae-rows``;
7. sae: SAE training activations/s and explained variance in fp32 and bf16 (precision_ab's ``sae_run``),
   the default SAE kind (TopK).

Interpret, steer-eval and sae-eval are not here: they read RUN/activations as the Ray Data extract
stage writes it, and the SAE as Ray Train saves it.

    python benchmarks/gpu_check.py                      # GPU if there is one, else CPU; scale 1.0 on a GPU
    python benchmarks/gpu_check.py --small              # CPU-sized: scale 0.005, short budgets
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


class BlockRay(importlib.abc.MetaPathFinder):
    """``import ray`` (or any ``ray.*``) raises ImportError: this check must run without Ray."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"{name}: Ray is blocked here (gpu_check runs saerec's Ray-free code only)")
        return None


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def token_budget(s: str) -> int | str:
    """``--batch-tokens`` values: a number, or ``auto`` (resolved on the device like ``train.batch_tokens``)."""
    return s if s == "auto" else int(s)


def sizes(args, cuda: bool) -> None:
    """Fill the budgets left unset: a GPU gets the full-size data and longer budgets."""
    small = args.small or not cuda
    defaults = {"scale": 0.005 if small else 1.0, "steps": 5 if small else 30, "train_seconds": 10 if small else 60,
                "latency_calls": 20 if small else 200, "sae_rows": 20_000 if small else 2_000_000,
                "sae_epochs": 1 if small else 2, "batch_tokens": [4096] if small else [4096, "auto"],
                "eval_users": 300 if small else 0}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="CPU-sized budgets (also the default without a GPU)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--scale", type=float, help="share of ML-20M's 138,493 users")
    ap.add_argument("--steps", type=int, help="training steps per throughput measurement")
    ap.add_argument("--batch-tokens", type=token_budget, nargs="+",
                    help="token budgets per batch for the throughput (numbers or auto: train.batch_tokens' device rule)")
    ap.add_argument("--train-seconds", type=float)
    ap.add_argument("--eval-users", type=int, help="test users evaluated (0: all)")
    ap.add_argument("--latency-calls", type=int)
    ap.add_argument("--sae-rows", type=int)
    ap.add_argument("--sae-epochs", type=int)
    ap.add_argument("--set", action="append", default=[], help="config override section.key=value (typed by the config)")
    ap.add_argument("--workdir", default=None, help="run directory parent (default: a temporary folder)")
    ap.add_argument("--out", default="benchmarks/results/gpu_check.json")
    args = ap.parse_args(argv)
    sys.meta_path.insert(0, BlockRay())
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    import numpy as np
    import torch

    from precision_ab import DTYPES, sae_run, train_rate
    from saerec.config import RunConfig, set_value
    from saerec.data.prepare import prepare, read_sequences
    from saerec.data.sequences import eval_pairs
    from saerec.eval.evaluate import evaluate_run
    from saerec.eval.ranking import recommend
    from saerec.model.checkpoint import save_model
    from saerec.model.registry import build_model
    from saerec.precision import compute_dtype
    from saerec.rundir import RunDir
    from saerec.train.batching import bucket_batches, make_windows
    from saerec.train.budget import batch_tokens_for
    from saerec.train.loop import train_epoch

    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.device(dev).type == "cuda"
    sizes(args, cuda)
    cfg = RunConfig()
    for k, v in [("data.dataset", "synthetic"), ("data.synthetic_preset", "ml-20m"),
                 ("data.synthetic_scale", args.scale)] + [tuple(s.split("=", 1)) for s in args.set]:
        set_value(cfg, k, json_or_str(v))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check-"))
    run = RunDir(work / "run")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "gpu_check", "device": dev, "scale": args.scale, "small": args.small, "sets": args.set,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name(0) if cuda else None},
              "steps": {}}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step(name: str, result: dict, t: float) -> None:
        result.update(seconds=time.perf_counter() - t, peak_rss_mb=peak_rss_mb())
        if cuda:
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        report["steps"][name] = result
        out.write_text(json.dumps(report, indent=2))
        print(f"{name}: " + ", ".join(f"{k} {v:,.4g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in result.items() if not isinstance(v, (dict, list))), flush=True)

    t = time.perf_counter()
    prep = prepare(run, cfg)
    n = int(prep.meta["interactions_total"])
    step("data", {"interactions": n, "interactions_per_second": n / (time.perf_counter() - t),
                  "test_users": prep.meta["test_users"], "items": prep.index.size}, t)

    t = time.perf_counter()
    windows = make_windows(prep.sequences("rec"), cfg.model.max_len, cfg.train.windows)
    n_items = prep.index.size
    del prep                                               # the log: later steps read RUN/data as the stages do
    rates = {}
    budgets = [batch_tokens_for(replace(cfg.train, batch_tokens=b), cfg.model, n_items, dev) for b in args.batch_tokens]
    for bt in budgets:
        c = RunConfig(model=cfg.model, train=replace(cfg.train, batch_tokens=bt))
        for name, dtype in DTYPES.items():
            torch.manual_seed(0)
            model = build_model(cfg.model, n_items).to(dev)
            rates[f"{name}@{bt}"] = train_rate(model, windows, c, dtype, args.steps, 0, dev)
            print(f"train {name} batch_tokens={bt}: {rates[f'{name}@{bt}']:,.0f} tok/s", flush=True)
    step("train_throughput", {"tokens_per_second": rates, "bf16_speedup": {
        bt: rates[f"bf16@{bt}"] / rates[f"fp32@{bt}"] for bt in budgets}, "windows": len(windows)}, t)

    t = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(cfg.model, n_items).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    dtype = compute_dtype(cfg.train.precision, dev)
    lengths = np.array([len(w) - 1 for w in windows])
    batch_tokens = batch_tokens_for(cfg.train, cfg.model, n_items, dev)
    batches = bucket_batches(lengths, batch_tokens, np.random.default_rng(0))
    tokens, done, chunk = 0, 0, 5
    while done < len(batches) and time.perf_counter() - t < args.train_seconds:
        stats = train_epoch(model, opt, windows, batches[done: done + chunk], cfg.train, dev, dtype=dtype)
        tokens, done = tokens + stats.tokens, done + chunk
    sync()
    save_model(run.recommender, model)
    step("train", {"batches": min(done, len(batches)), "epoch_batches": len(batches), "tokens": tokens,
                   "batch_tokens": batch_tokens,
                   "tokens_per_second": tokens / (time.perf_counter() - t), "precision": str(dtype or "fp32"),
                   "projected_epoch_seconds": (time.perf_counter() - t) * len(batches) / max(min(done, len(batches)), 1)},
         t)
    del windows, batches

    t = time.perf_counter()
    m = evaluate_run(run, device=dev)
    step("evaluate", {"test_users": m["test_users"], "ndcg@10": m["ndcg@10"],
                      "popularity_ndcg@10": m["popularity"]["ndcg@10"]}, t)

    t = time.perf_counter()
    index = _data_index(run)
    inputs, _ = eval_pairs(read_sequences(run, "test", index), cfg.model.max_len)
    if args.eval_users:
        inputs = inputs[: args.eval_users]
    model.eval()
    rec = {}
    for name, dtype in DTYPES.items():
        lat = []
        for i in range(args.latency_calls):
            s = time.perf_counter()
            recommend(model, [inputs[i % len(inputs)]], k=10, device=dev, dtype=dtype)
            lat.append(time.perf_counter() - s)                    # recommend returns host arrays: synchronised
        s = time.perf_counter()
        top = recommend(model, inputs, k=10, batch_size=256, device=dev, dtype=dtype)
        rec[name] = {"p50_ms": 1e3 * statistics.median(lat), "p99_ms": 1e3 * float(np.quantile(lat, 0.99)),
                     "batched_users_per_second": len(inputs) / (time.perf_counter() - s), "top": top}
    same = float((rec["fp32"].pop("top") == rec["bf16"].pop("top")).all(1).mean())
    step("recommend", {"users": len(inputs), **{f"{k}_{q}": v for k, r in rec.items() for q, v in r.items()},
                       "bf16_identical_top10_share": same}, t)

    t = time.perf_counter()
    from saerec.activations.extract import block_activations

    sae_part = read_sequences(run, "sae", index)
    acts, rows = [], 0
    with torch.no_grad():
        for lo in range(0, len(sae_part), 64):
            part = [sae_part.get(i) for i in range(lo, min(lo + 64, len(sae_part)))]
            a = block_activations(model, sae_part.users[lo: lo + len(part)], part, cfg.activations.layer)["activation"]
            acts.append(torch.from_numpy(a))
            rows += len(a)
            if rows >= args.sae_rows:
                break
    x = torch.cat(acts)[: args.sae_rows]
    step("extract", {"rows": len(x), "rows_per_second": len(x) / (time.perf_counter() - t)}, t)

    t = time.perf_counter()
    n_test = max(len(x) // 10, 1)
    sae = {name: sae_run(x[n_test:], x[:n_test], dtype, args.sae_epochs, 0, dev, cfg.sae.n_latents, cfg.sae.kind,
                         cfg.sae.k)
           for name, dtype in DTYPES.items()}
    step("sae", {"rows": len(x) - n_test, "epochs": args.sae_epochs, "n_latents": cfg.sae.n_latents, "kind": cfg.sae.kind,
                 **{f"{k}_{q}": v for k, r in sae.items() for q, v in r.items()},
                 "bf16_speedup": sae["bf16"]["activations_per_second"] / sae["fp32"]["activations_per_second"]}, t)
    report["ray_imported"] = "ray" in sys.modules
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}", flush=True)
    return report


def json_or_str(v):
    """A --set value: JSON (numbers, true/false, lists) or else the string (no PyYAML needed)."""
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v


def _data_index(run):
    """The data's training-item index, streamed from RUN/data (the model's, as the train stage saves it)."""
    from saerec.data.prepare import item_counts

    return item_counts(run)[0]


if __name__ == "__main__":
    main()
