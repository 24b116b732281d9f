"""RecBole's SASRec in saerec: its own module class, its weights read without unpickling code.

A model trained with RecBole 1.2.0 (``pip install 'saerec[recbole]'``) comes into saerec in two steps
(docs/models.md, "A model trained with RecBole"):

    python -m saerec.contrib.recbole convert saved/SASRec-....pth --items items.json --out converted
    saerec import-model --run RUN --dataset ... --arch saerec.contrib.recbole:sasrec \\
        --set model.factory_kwargs="$(cat converted/factory_kwargs.json)" \\
        --weights converted/model.safetensors --items converted/items.json

Why a converter: RecBole saves ``torch.save({"config": Config, "state_dict": ..., ...},
pickle_protocol=4)``. torch's weights-only loader (2.13) rejects protocol 4 whatever globals it
allows, and a plain ``torch.load`` would construct whatever classes the file names (arbitrary code).
:func:`read_checkpoint` unpickles with a restricted unpickler instead: only ``OrderedDict`` and the
tensor rebuild are real; every other global is an inert stub that keeps the plain data it is given,
so the hyper-parameters still come out of the pickled Config without running any of its code.

Why a factory and not a re-implementation: :func:`sasrec` builds RecBole's own ``SASRec`` class
(imported lazily, from a plain dict and a one-method dataset stub: no Config, so no ``sys.argv``
parsing, no ``./log``) and wraps it in :class:`~saerec.model.adapter.HookedRecommender`. Its
``forward`` runs every layer over every position and only then gathers the last one, so the layer
hooks see all positions: saerec's right-padded batch is exactly RecBole's input layout.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import torch

from ..errors import SaerecError, UsageError

INSTALL = "pip install 'saerec[recbole]' (recbole==1.2.0 kmeans-pytorch==0.3)"
FACTORY = "saerec.contrib.recbole:sasrec"


def numpy2_shim() -> None:
    """Aliases numpy 2 removed that RecBole 1.2.0's ``Config()`` reads (``np.float_`` ...): call it
    before creating a Config in a training script. saerec's factory needs none (it builds no Config)."""
    import numpy as np

    for name, value in {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}.items():
        if name not in np.__dict__:
            setattr(np, name, value)


# ---------------------------------------------------------------- reading a .pth without running it

class _Stub:
    """Every global outside the allow-list (RecBole's Config and enums, torch.device, numpy scalars,
    os.system ...): calling it runs nothing; the state pickle hands it is kept as plain data."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        self.state = state


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor_v2's contract, on a storage built here from the file's raw bytes."""
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _unpickle(path: Path):
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a torch zip checkpoint (torch.save's format since torch 1.6)")
    zf = zipfile.ZipFile(path)
    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise UsageError(f"{path}: not a torch checkpoint (expected one <name>/data.pkl, found {pkl[:3]})")
    prefix = pkl[0][: -len("data.pkl")]
    if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder") != b"little":
        raise UsageError(f"{path}: a big-endian checkpoint is not supported")
    storages: dict[str, torch.Tensor] = {}

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if module == "torch" and name in _STORAGE_DTYPES:
                return _STORAGE_DTYPES[name]
            return _Stub

        def persistent_load(self, pid):             # ('storage', dtype, key, location, numel)
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], torch.dtype)):
                raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
            _, dtype, key, _, numel = pid
            if key not in storages:
                raw = bytearray(zf.read(f"{prefix}data/{key}"))
                flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                if flat.numel() != numel:
                    raise pickle.UnpicklingError(f"storage {key}: {flat.numel()} elements, expected {numel}")
                storages[key] = flat
            return storages[key]

    try:
        return Restricted(io.BytesIO(zf.read(pkl[0]))).load()
    except (pickle.UnpicklingError, KeyError, RuntimeError, EOFError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None


def _plain(value):
    """``value`` if it is plain data (numbers, strings, lists, dicts of them), else None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else items
    if isinstance(value, dict):
        return {k: p for k, v in value.items() if isinstance(k, str) and (p := _plain(v)) is not None}
    return None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, the plain values of the pickled RecBole Config; {} for a bare state dict)."""
    path = Path(path)
    obj = _unpickle(path)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise UsageError(f"{path}: no state dict in the checkpoint (found {type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UsageError(f"{path}: the state dict holds non-tensor entries {bad[:5]}")
    config = obj.get("config") if isinstance(obj, dict) else None
    values = getattr(config, "state", None)
    final = values.get("final_config_dict") if isinstance(values, dict) else None
    return {k: v.contiguous() for k, v in state.items()}, _plain(final) or {}


def safe_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a RecBole ``.pth`` (``["state_dict"]``), read without executing pickled code."""
    return read_checkpoint(path)[0]


# ---------------------------------------------------------------- the converter

def factory_kwargs(state: dict[str, torch.Tensor], config: dict, overrides: dict | None = None) -> dict:
    """What :func:`sasrec` needs to rebuild the module: sizes from the tensors' shapes, the rest
    (heads, activation, LayerNorm eps) from the checkpoint's config unless given in ``overrides``."""
    need = ["item_embedding.weight", "position_embedding.weight", "trm_encoder.layer.0.feed_forward.dense_1.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        raise UsageError(f"not a RecBole SASRec state dict: no {missing[0]} (keys include {sorted(state)[:4]})")
    layers = {int(k.split(".")[2]) for k in state if k.startswith("trm_encoder.layer.")}
    kwargs = {"hidden_size": int(state["item_embedding.weight"].shape[1]), "n_layers": len(layers),
              "inner_size": int(state["trm_encoder.layer.0.feed_forward.dense_1.weight"].shape[0]),
              "max_len": int(state["position_embedding.weight"].shape[0])}
    for key in ("n_heads", "hidden_act", "layer_norm_eps"):
        value = (overrides or {}).get(key)
        value = config.get(key) if value is None else value
        if value is None:
            raise UsageError(f"{key}: not in the checkpoint's config; pass --{key.replace('_', '-')}")
        kwargs[key] = value
    return kwargs


def _item_list(path: Path, n_rows: int) -> list[int]:
    from ..model.importer import read_item_list

    if path.is_file() and "[PAD]" in path.read_text():
        raise UsageError(f"--items {path}: holds '[PAD]' (row 0); save field2id_token['item_id'][1:] (index 1 first)")
    ids = read_item_list(path)
    if len(ids) != n_rows - 1:
        raise UsageError(f"--items {path}: {len(ids)} item ids, but item_embedding has {n_rows - 1} items "
                         f"(rows 1..{n_rows - 1}; row 0 is [PAD]): save field2id_token['item_id'][1:]")
    return ids


def convert(checkpoint: str | Path, items: str | Path, out: str | Path, **overrides) -> dict:
    """Write ``OUT/model.safetensors``, ``OUT/factory_kwargs.json`` and ``OUT/items.json`` (ids as ints)."""
    from safetensors.torch import save_file

    state, config = read_checkpoint(checkpoint)
    kwargs = factory_kwargs(state, config, overrides)
    ids = _item_list(Path(items), int(state["item_embedding.weight"].shape[0]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"model.safetensors": lambda p: save_file(state, str(p)),
             "factory_kwargs.json": lambda p: p.write_text(json.dumps(kwargs)),
             "items.json": lambda p: p.write_text(json.dumps(ids))}
    for name, write in files.items():                # each file complete or absent
        tmp = out / f".{name}.tmp"
        write(tmp)
        tmp.replace(out / name)
    return {**kwargs, "n_items": len(ids), "tensors": len(state), "out": str(out)}


# ---------------------------------------------------------------- the factory

def _recbole_forward(net, items: torch.Tensor, lengths: torch.Tensor):
    """RecBole's own SASRec.forward: every layer over every position (the hooks read them all)."""
    return net(items.long(), lengths.long())


def sasrec(n_items: int, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 2, inner_size: int = 256,
           max_len: int = 50, layer_norm_eps: float = 1e-12, hidden_act: str = "gelu",
           hidden_dropout_prob: float = 0.5, attn_dropout_prob: float = 0.5):
    """RecBole's ``SASRec`` (defaults: RecBole's sasrec.yaml; ``max_len`` = MAX_ITEM_LIST_LENGTH) as a
    saerec model. States: ``embed`` (the input LayerNorm), ``block.i`` (``trm_encoder.layer.i``) and
    ``final`` (the last layer: RecBole has no final LayerNorm); scores against ``item_embedding``
    rows 1..V (row 0 is [PAD])."""
    from ..model.adapter import HookedRecommender

    anomaly = torch.is_anomaly_enabled()
    try:
        from recbole.model.sequential_recommender.sasrec import SASRec
    except ImportError as e:
        raise UsageError(f"{FACTORY}: RecBole is not importable ({e}); {INSTALL}") from None
    finally:        # RecBole's package import (its sine.py) turns on autograd anomaly mode for the process
        torch.autograd.set_detect_anomaly(anomaly)
    try:
        conf = {"n_layers": int(n_layers), "n_heads": int(n_heads), "hidden_size": int(hidden_size),
                "inner_size": int(inner_size), "MAX_ITEM_LIST_LENGTH": int(max_len),
                "layer_norm_eps": float(layer_norm_eps), "hidden_act": str(hidden_act),
                "hidden_dropout_prob": float(hidden_dropout_prob), "attn_dropout_prob": float(attn_dropout_prob)}
    except (TypeError, ValueError) as e:
        raise UsageError(f"{FACTORY}: bad model.factory_kwargs ({e})") from None
    fixed = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
             "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "device": "cpu",
             "initializer_range": 0.02, "loss_type": "CE"}

    class Items:                                     # SequentialRecommender.__init__ asks only num(ITEM_ID)
        def num(self, field):
            return int(n_items) + 1                  # RecBole counts [PAD]

    try:
        net = SASRec({**conf, **fixed}, Items())
    except Exception as e:                           # RecBole's own checks: heads vs hidden size, activation
        raise UsageError(f"{FACTORY}: RecBole's SASRec rejects {conf} ({type(e).__name__}: {e})") from None
    L = conf["n_layers"]
    states = {"embed": "LayerNorm", **{f"block.{i}": f"trm_encoder.layer.{i}" for i in range(L)},
              "final": f"trm_encoder.layer.{L - 1}"}
    return HookedRecommender(net, int(n_items), conf["MAX_ITEM_LIST_LENGTH"], states=states,
                             run=_recbole_forward, item_weights="item_embedding")


# ---------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    from ..cli import _Parser

    parser = _Parser(prog="python -m saerec.contrib.recbole", description="RecBole checkpoints for saerec")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("convert", help="RecBole SASRec .pth -> OUT/model.safetensors, factory_kwargs.json, items.json")
    sp.add_argument("checkpoint", help="the .pth RecBole's Trainer saved (read without unpickling code)")
    sp.add_argument("--items", required=True, help="the item ids of item_embedding rows 1..: RecBole's "
                                                   "dataset.field2id_token['item_id'][1:] as a JSON list")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--n-heads", type=int, help="override (or supply, for a bare state dict) n_heads")
    sp.add_argument("--hidden-act", help="override (or supply) hidden_act")
    sp.add_argument("--layer-norm-eps", type=float, help="override (or supply) layer_norm_eps")
    try:
        args = parser.parse_args(argv)
        summary = convert(args.checkpoint, args.items, args.out, n_heads=args.n_heads, hidden_act=args.hidden_act,
                          layer_norm_eps=args.layer_norm_eps)
    except SaerecError as e:
        print(f"saerec: error: {e}", file=sys.stderr)
        return 2
    out = Path(summary["out"])
    print(json.dumps(summary))
    print(f"next: saerec import-model --run RUN --dataset DATASET --arch {FACTORY} "
          f"--set model.factory_kwargs='{(out / 'factory_kwargs.json').read_text()}' "
          f"--weights {out / 'model.safetensors'} --items {out / 'items.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
