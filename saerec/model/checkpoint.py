"""Recommender checkpoints: ``model.safetensors`` + ``config.json`` (no pickle anywhere).

``config.json`` holds the :class:`~saerec.config.ModelConfig` (``arch`` says which model to build;
runs written before ``arch`` existed are GPTRec) and ``n_items``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..atomic import save_tensors, write_text

from ..config import ModelConfig
from ..errors import RunError, UsageError
from .interface import SequentialRecommender
from .registry import build_model

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(folder: str | Path, model: SequentialRecommender, meta: dict | None = None,
               weights_name: str = WEIGHTS, cfg: ModelConfig | None = None) -> None:
    """Weights and config; ``cfg`` defaults to the model's own (built-in architectures carry it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    core = getattr(model, "module", model)
    save_tensors(folder / weights_name, state_dict_for_save(core))
    conf = {"model": asdict(cfg or core.cfg), "n_items": core.n_items, **(meta or {})}
    write_text(folder / CONFIG, json.dumps(conf, indent=2))


def load_model(folder: str | Path, device: str | torch.device = "cpu",
               weights_name: str = WEIGHTS) -> tuple[SequentialRecommender, dict]:
    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / weights_name).exists():
        raise RunError(f"{folder}: no recommender checkpoint ({CONFIG} + {weights_name}); "
                       "run `saerec train` or `saerec import-model` first")
    meta = json.loads((folder / CONFIG).read_text())
    model = build_model(ModelConfig(**meta["model"]), int(meta["n_items"]))
    load_weights(model, load_file(str(folder / weights_name), device=str(device)), folder / weights_name)
    if "model_items" in meta:                 # an imported model with its own catalogue order
        from .adapter import ReindexedRecommender

        model = ReindexedRecommender(model, to_model_index(model_index(folder).item_ids, meta["model_items"]))
    return model.to(device).eval(), meta


def to_model_index(dataset_ids, model_ids) -> torch.Tensor:
    """(V + 1,) dataset dense index -> the model's own index (both 1-based, 0 = padding). Every
    dataset item must be in the model's catalogue."""
    position = {int(i): j + 1 for j, i in enumerate(model_ids)}
    missing = [int(i) for i in dataset_ids if int(i) not in position]
    if missing:
        raise UsageError(f"{len(missing)} of the dataset's {len(dataset_ids)} items are not in the model's item list "
                         f"(e.g. {missing[:5]}): import a model trained on this dataset's items")
    return torch.as_tensor(np.array([0] + [position[int(i)] for i in dataset_ids], dtype=np.int64))


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``model.load_state_dict(state)``, a mismatch reported as one line (missing, unexpected, shapes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}" if missing else "",
                 f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}" if unexpected else "",
                 f"shape {'; '.join(shapes[:3])}" if shapes else ""]
        raise UsageError(f"{source}: the state dict does not fit the model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def model_index(folder: str | Path):
    """The model's item index (dense index <-> dataset item id) from ``RECOMMENDER/items.parquet``."""
    import pandas as pd

    from ..data.sequences import ItemIndex

    items = pd.read_parquet(Path(folder) / "items.parquet", columns=["item_id", "index"])
    return ItemIndex(items.sort_values("index")["item_id"].to_numpy())


def catalogue_frame(items, index):
    """``RUN/recommender/items.parquet``, which :func:`model_index` reads back: the dataset's item
    attributes for the model's items, each with its dense ``index`` (training, ``import-model`` and
    an untrained benchmark model write it)."""
    import pandas as pd

    dense = pd.DataFrame({"item_id": index.item_ids, "index": np.arange(1, index.size + 1, dtype=np.int64)})
    return items.merge(dense, on="item_id")


@dataclass(frozen=True)
class HeldOut:
    """The test users' last next-item predictions in the model's index (:func:`test_pairs`)."""

    users: np.ndarray               # each point's user id
    inputs: list[np.ndarray]        # the items before each target, most recent ``max_len``
    targets: np.ndarray
    owner: np.ndarray               # each point's test sequence (file order): a user's points are contiguous, oldest first


def test_pairs(run, max_len: int, last: int = 1, index=None, batch_users: int | None = None, users=None) -> HeldOut:
    """The test users' last ``last`` predictions (:func:`saerec.data.sequences.eval_points`; ``last=1``
    is :func:`~saerec.data.sequences.eval_pairs`) read from ``RUN/data/sequences.parquet`` in bounded
    batches (``batch_users`` users each, default the readers'), in the model's item index (``index``,
    default :func:`model_index`); ``users``: only those test users (file order kept).

    Why here: every stage and tool that scores the test users (sae, interpret, tune, steer-eval, the
    browser, ``saerec steer --user``) reads them this one way. Why batches: each batch keeps only its
    sequences' last ``max_len + last`` items, so memory grows with the test users times ``max_len``,
    never with the log or the users' full histories."""
    from ..data.prepare import SEQ_BATCH_USERS, sequence_batches
    from ..data.sequences import eval_points, tails

    index = model_index(run.recommender) if index is None else index
    ids, inputs, targets, owner, seen = [np.zeros(0, np.int64)], [], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for batch in sequence_batches(run, "test", index, users, batch_users=batch_users or SEQ_BATCH_USERS):
        kept = tails(batch, max_len + last)
        x, t, o = eval_points(kept, max_len, last)
        inputs += x
        targets.append(t)
        owner.append(o + seen)
        ids.append(kept.users[o])
        seen += len(kept)
    return HeldOut(np.concatenate(ids), inputs, np.concatenate(targets), np.concatenate(owner))


test_pairs.__test__ = False     # a library function, not a pytest test, wherever a test module imports it
