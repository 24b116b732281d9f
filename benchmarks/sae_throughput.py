"""SAE training throughput (activations/s), saerec vs saprmarks/dictionary_learning, side by side.

Both train on the same in-memory pool of normalised activations (data loading excluded for
both), 1 process, fp32, batch 256, dictionary 2048, ReLU + L1 0.1, Adam lr 1e-3:

- ``saerec_relu``: ``saerec.sae`` ReLU-L1 with decoder projection (``trainer.train_steps``)
- ``dictionary_learning``: its ``StandardTrainer.update`` (ConstrainedAdam, schedulers), the
  trainer the paper's authors used, loaded from a checkout you point to with ``--dl-path``
  (fetched separately, never vendored; it needs ``pip install einops``)
- ``saerec_relu_autograd``: the same SAE with ``forward`` + autograd instead of its hand-written
  gradients (what the Ray Train path falls back to under DDP with several workers)
- ``saerec_topk`` / ``saerec_batchtopk`` / ``saerec_matryoshka``: the TopK kinds (k 32) with their
  hand-written gradients, sparse in k (``saerec/sae/sparse_grads.py``); ``saerec_topk_autograd``:
  TopK through ``forward`` + autograd on the dense code matrix
- ``sparsify_topk``: EleutherAI/sparsify's ``SparseCoder`` TopK (k 32), loaded from a checkout you
  point to with ``--sparsify`` (fetched separately, never vendored; it needs einops,
  simple-parsing, natsort and, for its default optimiser, schedulefree). The step loop repeats its
  ``Trainer``'s per-step work (b_dec at the first batch's mean, decoder renormalisation, forward
  without AuxK as its default ``auxk_alpha`` 0, the fired mask, ``float(fvu)``, backward, parallel
  gradient removal, optimiser step, dead counters) with its default optimiser (signum: SignSGD in
  schedule-free's wrapper); ``sparsify_topk_adam``: the same with torch Adam. Without Triton it
  decodes with ``F.embedding_bag`` (its eager path, the one a CPU takes).

Rounds are interleaved (round r of every trainer, then round r + 1), so a slow spell of a shared
machine hits all of them alike.

Activations: ``--run RUN`` uses RUN/activations/sae (GPTRec block.0 on ML-1M users 1-2999);
otherwise a Gaussian mixture shaped like them. Reports the median over ``--rounds`` of
``--steps`` steps each (after warm-up) and writes JSON.

    python benchmarks/sae_throughput.py --run runs/main --dl-path /path/to/dictionary_learning
    python benchmarks/sae_throughput.py --sparsify /path/to/sparsify \
        --impls saerec_topk saerec_topk_autograd sparsify_topk --out benchmarks/results/sae_topk_vs_sparsify.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from saerec.sae import SAEConfig, build_sae
from saerec.sae.normalize import NormStats
from saerec.sae.trainer import make_optimizer, train_steps


def load_pool(run: str | None, n: int = 1 << 20) -> torch.Tensor:
    if run and Path(run, "activations", "sae").exists():
        import pandas as pd
        import numpy as np
        df = pd.read_parquet(Path(run, "activations", "sae"), columns=["activation"])
        x = torch.from_numpy(np.stack(df["activation"].to_numpy()).astype("float32"))
        src = f"{run}/activations/sae"
    else:
        g = torch.Generator().manual_seed(0)
        means = torch.randn(64, 64, generator=g) * 2
        comp = torch.randint(0, 64, (n,), generator=g)
        x = means[comp] + torch.randn(n, 64, generator=g) * (0.25 + 0.5 * torch.rand(64, generator=g))[comp, None]
        src = "gaussian mixture"
    st = NormStats("global")
    st.update(x)
    x = st.finish()(x)
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))], src


def import_dictionary_learning(path: str):
    """Import only trainers/standard.py and what it needs, skipping the package __init__ (nnsight)."""
    root = Path(path) / "dictionary_learning"
    for name, sub in (("dictionary_learning", root), ("dictionary_learning.trainers", root / "trainers")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(sub)]
        sys.modules[name] = mod
    spec = importlib.util.spec_from_file_location("dictionary_learning.trainers.standard",
                                                  root / "trainers" / "standard.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.StandardTrainer


def import_sparsify(path: str):
    """sparsify's SparseCoder, its config and SignSGD from a checkout, skipping the package __init__
    (its trainer imports transformers and datasets). Modules imported only for hub loading and model
    hooks (huggingface_hub, transformers, accelerate) get empty stand-ins when not installed; none of
    their code runs in a training step."""
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    stand_ins = {"huggingface_hub": {"snapshot_download": None}, "transformers": {"PreTrainedModel": object},
                 "accelerate": {}, "accelerate.utils": {"send_to_device": None}}
    missing = {n for n in ("huggingface_hub", "transformers", "accelerate") if importlib.util.find_spec(n) is None}
    for name, attrs in stand_ins.items():
        if name.split(".")[0] in missing:
            sys.modules[name] = mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
    pkg = types.ModuleType("sparsify")
    pkg.__path__ = [str(Path(path) / "sparsify")]
    sys.modules["sparsify"] = pkg
    coder = importlib.import_module("sparsify.sparse_coder")
    config = importlib.import_module("sparsify.config")
    sign_sgd = importlib.import_module("sparsify.sign_sgd")
    return coder.SparseCoder, config.SparseCoderConfig, sign_sgd.SignSGD


def sparsify_runner(mods, pool, args, optimizer="signum"):
    """Rounds of sparsify TopK steps, with its Trainer's per-step work (sparsify/trainer.py)."""
    SparseCoder, Config, SignSGD = mods
    torch.manual_seed(0)
    sae = SparseCoder(pool.shape[1], Config(k=32, num_latents=args.dict_size), "cpu", dtype=torch.float32)
    scale = (sae.num_latents / 2 ** 14) ** 0.5              # its default learning rates
    if optimizer == "signum":
        from schedulefree import ScheduleFreeWrapper
        opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=5e-3 / scale)]), momentum=0.95)
        opt.train()
    else:
        opt = torch.optim.Adam(sae.parameters(), lr=2e-4 / scale)
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    did_fire = torch.zeros(sae.num_latents, dtype=torch.bool)
    state = {"step": 0}

    def step(x):
        if state["step"] == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x=x, y=x, dead_mask=None)
        did_fire[out.latent_indices.flatten()] = True
        float(out.fvu.detach())
        (out.fvu + 0.0 * out.auxk_loss + out.multi_topk_fvu / 8).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            since_fired.add_(x.shape[0])
            since_fired[did_fire] = 0
            did_fire.zero_()
        state["step"] += 1

    for x in batches(pool, args.batch, args.warmup, 0):
        step(x)

    def round_(r):
        for x in batches(pool, args.batch, args.steps, args.warmup + r * args.steps):
            step(x)
    return round_


def batches(pool, batch, steps, offset):
    n = len(pool)
    for i in range(steps):
        lo = ((offset + i) * batch) % (n - batch)
        yield pool[lo: lo + batch]


def saerec_runner(kind, pool, args, manual_grads=True):
    """A function running one timed round of ``args.steps`` steps (after warm-up) of a saerec SAE."""
    cfg = SAEConfig(kind=kind, n_latents=args.dict_size, l1=0.1, k=32, lr=1e-3, batch_size=args.batch)
    sae = build_sae(pool.shape[1], cfg)
    sae.init_from_sample(pool[:20_000])
    opt = make_optimizer(sae)
    train_steps(sae, opt, batches(pool, args.batch, args.warmup, 0), manual_grads=manual_grads)

    def round_(r):
        train_steps(sae, opt, batches(pool, args.batch, args.steps, args.warmup + r * args.steps),
                    manual_grads=manual_grads)
    return round_


def dl_runner(Trainer, pool, args):
    total = args.warmup + args.rounds * args.steps
    tr = Trainer(steps=max(total + 10, 2100), activation_dim=pool.shape[1], dict_size=args.dict_size, layer=0,
                 lm_name="bench", lr=1e-3, l1_penalty=0.1, warmup_steps=1000, sparsity_warmup_steps=2000,
                 device="cpu", seed=0)
    step = [0]
    for x in batches(pool, args.batch, args.warmup, 0):
        tr.update(step[0], x)
        step[0] += 1

    def round_(r):
        for x in batches(pool, args.batch, args.steps, args.warmup + r * args.steps):
            tr.update(step[0], x)
            step[0] += 1
    return round_


ALL = ["saerec_relu", "dictionary_learning", "saerec_relu_autograd", "saerec_topk", "saerec_topk_autograd",
       "sparsify_topk", "sparsify_topk_adam", "saerec_batchtopk", "saerec_matryoshka"]


def add_ratios(out: dict, results: dict, base: str, key: str) -> None:
    """Each implementation's rate over ``base``'s: of the medians, and the median of per-round ratios
    (paired: round r of each ran right after round r of the others)."""
    b = results[base]["activations_per_second_median"]
    out[f"ratio_vs_{base}"] = {k: v["activations_per_second_median"] / b for k, v in results.items()}
    out[f"paired_ratio_median{key}"] = {k: statistics.median(x / y for x, y in zip(v["rounds"], results[base]["rounds"]))
                                        for k, v in results.items()}
    out[f"paired_cpu_ratio_median{key}"] = {
        k: statistics.median(x / y for x, y in zip(v["cpu_rounds"], results[base]["cpu_rounds"]))
        for k, v in results.items()}
    print(f"ratio vs {base} per CPU second (median of per-round ratios): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in out[f"paired_cpu_ratio_median{key}"].items()))
    print(f"ratio vs {base} (of medians): " + ", ".join(f"{k} {v:.2f}x" for k, v in out[f"ratio_vs_{base}"].items()))
    print(f"ratio vs {base} (median of per-round ratios): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in out[f"paired_ratio_median{key}"].items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run")
    ap.add_argument("--dl-path", default=os.environ.get("DICTIONARY_LEARNING_PATH"))
    ap.add_argument("--sparsify", default=os.environ.get("SPARSIFY_PATH"), help="EleutherAI/sparsify checkout")
    ap.add_argument("--impls", nargs="+", choices=ALL, default=ALL, help="implementations to run (default: all)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dict-size", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pool-rows", type=int, default=1 << 20, help="synthetic pool size (without --run)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default="benchmarks/results/sae_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pool, src = load_pool(args.run, args.pool_rows)
    order = list(args.impls)
    Trainer = import_dictionary_learning(args.dl_path) if args.dl_path and "dictionary_learning" in order else None
    if Trainer is None and "dictionary_learning" in order:
        print("skipping dictionary_learning (no --dl-path)")
        order.remove("dictionary_learning")
    sparsify = import_sparsify(args.sparsify) if args.sparsify else None
    if sparsify is None and any(n.startswith("sparsify") for n in order):
        print("skipping sparsify (no --sparsify)")
        order = [n for n in order if not n.startswith("sparsify")]
    runners = {}
    for name in order:
        if name == "dictionary_learning":
            runners[name] = dl_runner(Trainer, pool, args)
        elif name.startswith("sparsify"):
            runners[name] = sparsify_runner(sparsify, pool, args, "adam" if name.endswith("adam") else "signum")
        else:
            runners[name] = saerec_runner(name.split("_")[1], pool, args, manual_grads=not name.endswith("autograd"))
    # rounds interleaved across trainers: a slow spell of the shared machine hits all of them
    rates: dict[str, list[float]] = {name: [] for name in order}
    cpu_rates: dict[str, list[float]] = {name: [] for name in order}    # per CPU second of this process
    for r in range(args.rounds):
        for name, run_round in runners.items():
            t, c = time.perf_counter(), time.process_time()
            run_round(r)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - t))
            cpu_rates[name].append(args.steps * args.batch / (time.process_time() - c))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in order), flush=True)
    results = {name: {"activations_per_second_median": statistics.median(v), "rounds": v,
                      "activations_per_cpu_second_median": statistics.median(cpu_rates[name]),
                      "cpu_rounds": cpu_rates[name]} for name, v in rates.items()}
    for name, v in results.items():
        print(f"{name:<22}{v['activations_per_second_median']:>12,.0f} act/s  "
              f"(rounds: {', '.join(f'{r:,.0f}' for r in v['rounds'])}); "
              f"{v['activations_per_cpu_second_median']:,.0f} act per CPU s")
    out = {"benchmark": "sae_train_throughput", "activations": src, "pool_rows": len(pool), "batch": args.batch,
           "dict_size": args.dict_size, "steps_per_round": args.steps, "rounds": args.rounds, "threads": args.threads,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "results": results}
    for base, key in (("dictionary_learning", ""), ("sparsify_topk", "_sparsify_topk")):
        if base in results:
            add_ratios(out, results, base, key)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
