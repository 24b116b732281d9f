"""Bring your own model: a recommender defined here (torch's stock TransformerEncoder, not a saerec
architecture), trained in plain torch with its own item order, imported with `saerec import-model`
through the documented adapter, then extract -> sae -> interpret -> steer -> a served gRPC
Recommend with steering, unchanged. Plus the import's bad inputs (exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines
import torch
import torch.nn as nn
import torch.nn.functional as F

from saerec.cli import main
from saerec.model.adapter import HookedRecommender

HERE = Path(__file__).resolve().parent
SYNTH = ["data.dataset=synthetic", "data.synthetic_users=500", "data.synthetic_items=120", "data.synthetic_genres=5",
         "sae.kind=relu", "sae.n_latents=128", "sae.epochs=2", "sae.l1=0.05", "sae.dead_window=5000"]


class TinyRec(nn.Module):
    """The user's own model: it knows nothing of saerec."""

    def __init__(self, n_items: int, d: int = 32, max_len: int = 40):
        super().__init__()
        self.emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        T = items.shape[1]
        x = self.emb(items) + self.pos(torch.arange(T))[None]
        causal = nn.Transformer.generate_square_subsequent_mask(T)
        return self.norm(self.encoder(x, mask=causal, is_causal=True))


def make_model(n_items: int, d: int = 32, max_len: int = 40) -> HookedRecommender:
    """The factory `saerec import-model --arch test_byo_model:make_model` calls."""
    return HookedRecommender(TinyRec(n_items, d, max_len), n_items, max_len,
                             states={"block.0": "encoder.layers.0", "block.1": "encoder.layers.1", "final": "norm"},
                             run=lambda m, items, lengths: m(items), item_weights="emb")


def _train_tiny(seqs: list[np.ndarray], n_items: int, epochs: int = 25) -> TinyRec:
    torch.manual_seed(0)
    model = TinyRec(n_items)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    wins = [s[-41:] for s in seqs if len(s) > 1]
    for _ in range(epochs):
        for lo in range(0, len(wins), 64):
            batch = wins[lo: lo + 64]
            T = max(len(w) for w in batch)
            x = torch.zeros(len(batch), T, dtype=torch.long)
            for r, w in enumerate(batch):
                x[r, :len(w)] = torch.as_tensor(w)
            inp, tgt = x[:, :-1], x[:, 1:]
            h = model(inp)[tgt != 0]
            loss = F.cross_entropy(h @ model.emb.weight[1:].T, tgt[tgt != 0] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ray_session):
    """The user's side: a trained model saved as safetensors with its own item order (shuffled, plus
    three items the dataset does not have)."""
    from safetensors.torch import save_file

    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import prepare
    from saerec.rundir import RunDir

    tmp = tmp_path_factory.mktemp("byo")
    scratch = RunDir(tmp / "scratch")
    prep = prepare(scratch, apply_overrides(RunConfig(), SYNTH))
    ids = prep.index.item_ids
    own = np.concatenate([np.random.default_rng(0).permutation(ids), [10**6, 10**6 + 1, 10**6 + 2]])
    position = {int(i): j + 1 for j, i in enumerate(own)}
    rec = prep.sequences("rec")
    seqs = [np.array([position[int(i)] for i in prep.index.item_ids[s - 1]]) for s in (rec.get(i) for i in range(len(rec)))]
    model = _train_tiny(seqs, len(own))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "tiny.safetensors"))
    (tmp / "items.json").write_text(json.dumps([int(i) for i in own]))
    return tmp


def _import(run: Path, exported: Path, *extra: str, weights: str = "tiny.safetensors", items: str = "items.json") -> int:
    sets = [a for s in [*SYNTH, f"model.factory_path={HERE}"] for a in ("--set", s)]
    return main(["import-model", "--run", str(run), "--arch", "test_byo_model:make_model", *sets, *extra,
                 "--weights", str(exported / weights), "--items", str(exported / items)])


def test_imported_model_runs_every_stage_and_is_served_with_steering(exported, tmp_path):
    from saerec.config import RunConfig
    from saerec.data.prepare import load_prepared
    from saerec.interpret.stage import interpret_stage
    from saerec.model.checkpoint import load_model
    from saerec.rundir import RunDir
    from saerec.activations.stage import extract_stage
    from saerec.sae.stage import sae_stage
    from saerec.serving.client import to_steering
    from saerec.steer.edits import Edit
    from saerec.steer.intervene import Steerer
    from saerec.v1 import recommender_pb2 as pb
    from test_serving import genre_count, serving

    run = RunDir(tmp_path / "run")
    # RUN/data current (the same data/split config) but without the log: import-model reuses it and
    # reads only sequences.parquet, as `saerec train` does; the checks below load the log back
    shutil.copytree(exported / "scratch" / "data", run.data)
    (run.data / "interactions.parquet").rename(tmp_path / "log.parquet")
    assert _import(run.root, exported) == 0
    assert not (run.data / "interactions.parquet").exists()                 # reused, not re-prepared
    (tmp_path / "log.parquet").rename(run.data / "interactions.parquet")
    model, meta = load_model(run.recommender)
    assert type(model).__name__ == "ReindexedRecommender" and meta["model"]["arch"] == "test_byo_model:make_model"
    metrics = run.read_json("recommender/metrics.json")
    assert metrics["ndcg@10"] > metrics["popularity"]["ndcg@10"]      # the import kept the model's own item order

    cfg = RunConfig.load(run.root / "config.yaml")
    extract_stage(run, cfg)
    sae_stage(run, cfg)
    summary = interpret_stage(run)
    assert summary["mean_top_correlation_sae"] > summary["mean_top_correlation_neurons"]

    steerer = Steerer.from_run(run)
    prep = load_prepared(run)
    _, inputs, _ = prep.eval_set("test", model.max_len)
    genre = steerer.catalog.canonical("Sci-Fi")
    col = prep.items.set_index("item_id").loc[prep.index.item_ids, genre].to_numpy().astype(bool)
    base = steerer.recommend(inputs)
    up = steerer.recommend(inputs, [[Edit("Sci-Fi", 8.0, "set")]] * len(inputs))
    assert col[up - 1].mean() > 1.1 * col[base - 1].mean(), (col[up - 1].mean(), col[base - 1].mean())

    with serving(run) as (stub, _, _):
        plain = steered = 0
        for h in inputs[:30]:
            hist = prep.index.to_ids(h).tolist()
            a = stub.Recommend(pb.RecommendRequest(history=hist, k=10), timeout=10)
            b = stub.Recommend(pb.RecommendRequest(history=hist, k=10, steering=[to_steering("Sci-Fi=set:8")]),
                               timeout=10)
            assert len(a.items) == len(b.items) == 10 and not set(hist) & {it.item_id for it in b.items}
            plain, steered = plain + genre_count(a, "Sci-Fi"), steered + genre_count(b, "Sci-Fi")
        assert steered > 1.1 * plain, (plain, steered)


def _bad_weights(folder: Path) -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "tiny.safetensors"))
    state["emb.weight"] = state["emb.weight"][:-1].contiguous()
    save_file(state, str(folder / "short.safetensors"))
    return folder / "short.safetensors"


@pytest.mark.parametrize("case, message", [
    ("arch", "model.arch: 'nosuch' is not one of"),
    ("factory", "cannot import 'no_such_module'"),
    ("weights", "the state dict does not fit the model: shape emb.weight"),
    ("layer", "activations.layer 'block.7' is not a hidden state of this model"),
    ("items", "items are not in the model's item list"),
    ("not-safetensors", "not a safetensors file"),
])
def test_import_bad_inputs_are_one_line_and_write_nothing(exported, tmp_path, capsys, case, message):
    run = tmp_path / "run"
    if case == "arch":
        rc = main(["import-model", "--run", str(run), "--arch", "nosuch", "--weights", "w", "--items", "i"])
    elif case == "factory":
        rc = main(["import-model", "--run", str(run), "--arch", "no_such_module:make", "--set", SYNTH[0],
                   "--weights", str(exported / "tiny.safetensors"), "--items", str(exported / "items.json")])
    elif case == "weights":
        _bad_weights(exported)
        rc = _import(run, exported, weights="short.safetensors")
    elif case == "layer":
        rc = _import(run, exported, "--set", "activations.layer=block.7")
    elif case == "items":
        ids = json.loads((exported / "items.json").read_text())
        (exported / "few.json").write_text(json.dumps([10**7 + i for i in range(5)] + ids[5:]))   # 5 dataset items lost
        rc = _import(run, exported, items="few.json")
    else:
        (exported / "junk.safetensors").write_bytes(b"not a safetensors file")
        rc = _import(run, exported, weights="junk.safetensors")
    err = error_lines(capsys.readouterr().err)
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (run / "recommender").exists()
