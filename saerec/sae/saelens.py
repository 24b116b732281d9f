"""The SAE in SAELens's on-disk layout (``sae-lens`` 6.x): ``cfg.json``, ``sae_weights.safetensors``
and ``sparsity.safetensors``, which ``sae_lens.SAE.load_from_disk(OUT)`` reads.

SAELens encodes raw activations as ``act((x - b_dec·apply_b_dec_to_input) W_enc + b_enc)``; saerec
normalises first (``(x - mean) / std``, a scalar or per-dimension pair kept with the SAE). SAELens has
no such affine normaliser, so it is folded into the weights, which makes the exported SAE read raw
hidden states, as a SAELens user expects::

    W_enc' = W_enc / std[:, None]        b_enc' = b_enc - (b_dec + mean / std) W_enc
    W_dec' = W_dec * std[None, :]        b_dec' = b_dec * std + mean          (apply_b_dec_to_input = false)

so ``encode'(x) = encode(norm(x))`` and ``decode'(f) = norm⁻¹(decode(f))`` up to float32 rounding.
Kinds: relu -> ``standard``; jumprelu -> ``jumprelu`` (its thresholds); batchtopk and matryoshka
-> ``jumprelu`` with every threshold at the learned global one (what saerec runs at inference); topk -> ``topk``.
``sparsity.safetensors`` holds log10 of each feature's firing frequency on the test users (SAELens's
feature density), -10 for features that never fired. :func:`import_saelens` reads the layout back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..atomic import save_tensors, write_text
from ..errors import UsageError
from .base import SAEConfig, SparseAutoencoder, build_sae
from .normalize import Normalizer

ARCHITECTURE = {"relu": "standard", "jumprelu": "jumprelu", "batchtopk": "jumprelu", "matryoshka": "jumprelu",
                "topk": "topk"}
SAELENS_VERSION = "6.54.12"          # the release whose loader the export is tested against


def folded_weights(sae: SparseAutoencoder) -> dict[str, torch.Tensor]:
    """W_enc (d_in, d_sae), b_enc, W_dec (d_sae, d_in), b_dec for raw activations (module docstring)."""
    d = sae.d_in
    with torch.no_grad():
        mean = sae.normalizer.mean.double().expand(d)
        std = sae.normalizer.std.double().expand(d)
        W_enc, W_dec = sae.W_enc.double(), sae.W_dec.double()
        b_enc, b_dec = sae.b_enc.double(), sae.b_dec.double()
        out = {"W_enc": W_enc / std[:, None], "b_enc": b_enc - (b_dec + mean / std) @ W_enc,
               "W_dec": W_dec * std[None, :], "b_dec": b_dec * std + mean}
        if sae.cfg.kind == "jumprelu":
            out["threshold"] = sae.log_threshold.double().exp()
        elif sae.cfg.kind in ("batchtopk", "matryoshka"):
            out["threshold"] = sae.threshold.double().clamp_min(0.0).expand(sae.cfg.n_latents).clone()
    return {k: v.float().contiguous() for k, v in out.items()}


def export_saelens(sae: SparseAutoencoder, meta: dict, out: str | Path, firing=None, model_name: str = "saerec") -> dict:
    """Write ``out/`` (created; existing SAELens files in it are replaced atomically). Returns cfg.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    kind = sae.cfg.kind
    cfg = {"architecture": ARCHITECTURE[kind], "d_in": sae.d_in, "d_sae": sae.cfg.n_latents, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
           "reshape_activations": "none",
           "metadata": {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None,
                        "model_name": model_name, "hook_name": meta.get("layer"), "hook_head_index": None,
                        "prepend_bos": False, "exported_by": "saerec export --format saelens",
                        "saerec_kind": kind, "saerec_normalizer": sae.normalizer.mode}}
    if kind == "topk":
        cfg["k"] = int(sae.cfg.k)
        cfg["rescale_acts_by_decoder_norm"] = False
    save_tensors(out / "sae_weights.safetensors", folded_weights(sae))
    if firing is not None:
        dens = torch.tensor(list(map(float, firing)), dtype=torch.float64)
        sparsity = torch.where(dens > 0, dens.clamp_min(1e-300).log10(), torch.tensor(-10.0, dtype=torch.float64))
        save_tensors(out / "sparsity.safetensors", {"sparsity": sparsity.float()})
    write_text(out / "cfg.json", json.dumps(cfg, indent=2) + "\n")
    return cfg


def import_saelens(folder: str | Path) -> SparseAutoencoder:
    """A saerec SAE from a SAELens folder (standard, jumprelu or topk; no activation normalisation)."""
    folder = Path(folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    arch = cfg.get("architecture", "standard")
    kinds = {"standard": "relu", "jumprelu": "jumprelu", "topk": "topk"}
    if arch not in kinds:
        raise UsageError(f"{folder}/cfg.json: architecture {arch!r} has no saerec kind (known: {', '.join(kinds)})")
    if cfg.get("normalize_activations", "none") != "none":
        raise UsageError(f"{folder}/cfg.json: normalize_activations {cfg['normalize_activations']!r} is not supported")
    w = load_file(str(folder / "sae_weights.safetensors"))
    sae = build_sae(int(cfg["d_in"]), SAEConfig(kind=kinds[arch], n_latents=int(cfg["d_sae"]), k=int(cfg.get("k", 32))))
    b_enc = w["b_enc"] if cfg.get("apply_b_dec_to_input", True) else w["b_enc"] + w["b_dec"] @ w["W_enc"]
    with torch.no_grad():
        sae.W_enc.copy_(w["W_enc"])
        sae.W_dec.copy_(w["W_dec"])
        sae.b_enc.copy_(b_enc)
        sae.b_dec.copy_(w["b_dec"])
        if arch == "jumprelu":
            sae.log_threshold.copy_(w["threshold"].clamp_min(1e-30).log())
    sae.normalizer = Normalizer.identity()
    return sae.eval()

