"""GPTRec checkpoints: ``model.safetensors`` + ``config.json`` (no pickle anywhere)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ModelConfig
from ..errors import RunError
from .gptrec import GPTRec

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(folder: str | Path, model: GPTRec, meta: dict | None = None, weights_name: str = WEIGHTS) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    core = getattr(model, "module", model)
    save_file(state_dict_for_save(core), str(folder / weights_name))
    cfg = {"model": asdict(core.cfg), "n_items": core.n_items, **(meta or {})}
    (folder / CONFIG).write_text(json.dumps(cfg, indent=2))


def load_model(folder: str | Path, device: str | torch.device = "cpu",
               weights_name: str = WEIGHTS) -> tuple[GPTRec, dict]:
    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / weights_name).exists():
        raise RunError(f"{folder}: no GPTRec checkpoint ({CONFIG} + {weights_name}); run `saerec train` first")
    meta = json.loads((folder / CONFIG).read_text())
    model = GPTRec(ModelConfig(**meta["model"]), int(meta["n_items"]))
    model.load_state_dict(load_file(str(folder / weights_name), device=str(device)))
    return model.to(device).eval(), meta


def model_index(folder: str | Path):
    """The model's item index (dense index <-> dataset item id) from ``RECOMMENDER/items.parquet``."""
    import pandas as pd

    from ..data.sequences import ItemIndex

    items = pd.read_parquet(Path(folder) / "items.parquet", columns=["item_id", "index"])
    return ItemIndex(items.sort_values("index")["item_id"].to_numpy())
