"""``saerec import-model``: write ``RUN/recommender/`` from a model trained elsewhere.

Inputs: ``model.arch`` (a built-in architecture or a factory ``package.module:function``, with
``model.factory_kwargs``), the trained weights as safetensors (no pickle: convert a ``.pth`` or a
Lightning ``.ckpt`` first, docs/models.md), and the model's item list (JSON list, or one id per
line: the dataset item id of the model's index 1, 2, ...). The run's data stage is prepared first
(``RUN/data``, streamed or reused as ``saerec train`` does) so that every later stage reads the same
split; the item index is then read from ``sequences.parquet`` in bounded batches, never the whole
log. Each check fails with one line before anything is written; the folder is written beside
``RUN/recommender`` and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..errors import UsageError
from ..rundir import A, RunDir


def read_item_list(path: Path) -> list[int]:
    """The model's catalogue: dataset item ids in the model's index order (index 1 first)."""
    if not path.is_file():
        raise UsageError(f"--items {path}: no such file")
    text = path.read_text()
    try:
        ids = json.loads(text) if path.suffix == ".json" else [int(t) for t in text.split()]
        ids = [int(i) for i in ids]
    except (ValueError, TypeError) as e:
        raise UsageError(f"--items {path}: expected a JSON list of integer item ids (or one id per line): {e}") from None
    if len(set(ids)) != len(ids):
        raise UsageError(f"--items {path}: {len(ids) - len(set(ids))} duplicate item ids")
    if not ids:
        raise UsageError(f"--items {path}: the item list is empty")
    return ids


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise UsageError(f"--weights {path}: no such file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UsageError(f"--weights {path}: not a safetensors file ({e}); convert the checkpoint first "
                         "(docs/models.md)") from None


def import_model(run: RunDir, cfg: RunConfig, weights: Path, items: Path) -> dict:
    """Check the model against the run's data and write ``RUN/recommender/``; returns a summary."""
    from ..data.prepare import item_counts, prepare_files
    from .checkpoint import catalogue_frame, load_weights, save_model, to_model_index
    from .registry import build_model

    ids = read_item_list(Path(items))
    state = read_weights(Path(weights))
    model = build_model(cfg.model, len(ids))
    load_weights(model, state, weights)
    layer = cfg.activations.layer
    if layer not in model.state_names:
        raise UsageError(f"activations.layer {layer!r} is not a hidden state of this model; known: {model.state_names}")
    model.eval()
    try:                                            # one real batch through the model before anything is written
        with torch.no_grad():
            probe = torch.as_tensor(np.asarray([[1, 2, 3], [4, 5, 0]]).clip(max=len(ids)))
            scores = model.last_scores(probe, torch.tensor([3, 2]), exclude_seen=False)
    except Exception as e:
        raise UsageError(f"model.arch {cfg.model.arch!r}: the model fails on a test batch "
                         f"({type(e).__name__}: {e})") from None
    if tuple(scores.shape) != (2, len(ids)):
        raise UsageError(f"model.arch {cfg.model.arch!r}: scores have shape {tuple(scores.shape)}, "
                         f"expected (batch, {len(ids)}) for {len(ids)} items in --items")
    prepare_files(run, cfg)                       # the model is sound: now check it against the data
    index, _ = item_counts(run)                   # the training items (rec + sae), read in bounded batches
    to_model = to_model_index(index.item_ids, ids)

    run.root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".recommender-", dir=run.root))
    try:
        save_model(tmp, model, {"model_items": ids, "imported_from": str(weights)}, cfg=cfg.model)
        catalogue_frame(run.read_parquet(A.ITEMS), index).to_parquet(tmp / "items.parquet", index=False)
        (tmp / "split.json").write_text(json.dumps(run.read_json(A.SPLIT), indent=2, default=str))
        if run.recommender.exists():
            shutil.rmtree(run.recommender)
        tmp.rename(run.recommender)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"arch": cfg.model.arch, "model_items": len(ids), "dataset_items": index.size,
            "unscored_model_items": len(ids) - index.size, "states": model.state_names,
            "reindexed": not np.array_equal(to_model.numpy(), np.arange(index.size + 1))}
