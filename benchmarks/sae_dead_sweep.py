"""Dead latents of the TopK kinds under SAE config overrides, fast: the run's cached SAE-part
activations held in memory, saerec's trainer (``train_steps``) for the run's step budget, then on
the test users: EV, L0, the dead fraction (no firing on any test position, as sae-eval), the same
under the training-time batch top-k, the training dead mask, and its trajectory per epoch.
No probing or absorption (``sae_kinds_suite.py`` measures those). Writes JSON lines; nothing is
written into the run.

    python benchmarks/sae_dead_sweep.py --run runs/gptrec-s0 --out /tmp/dead.jsonl \\
        kind=batchtopk kind=batchtopk,auxk_alpha=2.0,dead_window=20000
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from saerec.activations.store import iter_batches, to_tensor
from saerec.config import RunConfig
from saerec.sae.base import build_sae
from saerec.sae.ray_train import norm_and_init
from saerec.sae.trainer import ReconStats, make_optimizer, train_steps


def load(folder: Path, norm) -> torch.Tensor:
    return norm(torch.cat([to_tensor(rb.column(0)) for rb in iter_batches(folder, ("activation",), 65_536)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--epochs", type=int, default=10, help="passes over the SAE part (ML-1M: 10 = the step budget)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("specs", nargs="+", help="comma-separated sae fields per trial, e.g. kind=matryoshka,auxk_alpha=2.0")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    root = Path(a.run)
    cfg = RunConfig.load(root / "config.yaml")
    norm, init, _, d = norm_and_init(root / "activations" / "sae", cfg.sae.normalization)
    X, T = load(root / "activations" / "sae", norm), load(root / "activations" / "test", norm)
    for spec in a.specs:
        c = replace(cfg.sae, **{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in spec.split(","))})
        torch.manual_seed(c.seed)
        sae = build_sae(d, c)
        sae.init_from_sample(torch.tensor(init))
        opt = make_optimizer(sae)
        g = torch.Generator().manual_seed(c.seed)
        t0, traj, nb = time.perf_counter(), [], len(X) // c.batch_size
        for _ in range(a.epochs):
            perm = torch.randperm(len(X), generator=g)
            train_steps(sae, opt, (X[perm[i * c.batch_size:(i + 1) * c.batch_size]] for i in range(nb)))
            traj.append(round(float(sae.dead_mask().float().mean()), 3))
        seconds = time.perf_counter() - t0
        sae.eval()
        st, fired = ReconStats(c.n_latents), torch.zeros(c.n_latents, dtype=torch.bool)
        with torch.no_grad():
            for lo in range(0, len(T), 8192):
                f = sae.encode(T[lo:lo + 8192])
                st.update(T[lo:lo + 8192], sae.decode(f), f)
            for lo in range(0, len(T) - c.batch_size + 1, c.batch_size):      # training's selection
                fired |= (sae.train_codes(sae.pre_acts(T[lo:lo + c.batch_size])) > 0).any(0)
        r = st.result()
        row = {"spec": spec, "steps": nb * a.epochs, "explained_variance": r["explained_variance"], "l0": r["l0"],
               "dead_fraction": r["dead_fraction"], "dead_fraction_train_selection": 1 - float(fired.float().mean()),
               "dead_mask_end": float(sae.dead_mask().float().mean()), "dead_mask_per_epoch": traj,
               "train_seconds": seconds}
        if getattr(sae, "prefixes", None):
            lo, row["dead_fraction_per_prefix_group"] = 0, []
            for m in sae.prefixes:
                row["dead_fraction_per_prefix_group"].append(float((st.fired[lo:m] == 0).float().mean()))
                lo = m
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
