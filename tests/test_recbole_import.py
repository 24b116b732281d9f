"""A model trained by an external library, imported through the adapter (issue 18, in CI).

RecBole 1.2.0 trains its own SASRec (tests/recbole_train.py, a subprocess: RecBole parses sys.argv
and writes ./log_tensorboard) on the rec part of a small synthetic saerec dataset, exported as a
RecBole atomic file whose item tokens are saerec's item ids. `python -m saerec.contrib.recbole
convert` reads RecBole's .pth without unpickling code; `saerec import-model --arch
saerec.contrib.recbole:sasrec` imports it. The imported model is RecBole's own module class and must
score exactly as RecBole's full_sort_predict did in RecBole's process; evaluate, extract -> sae ->
interpret and steering then work unchanged. Plus the converter's bad inputs (exit 2, one line)
and a pickled payload that the safe reader must not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saerec.cli import main
from conftest import error_lines, require_module
from saerec.contrib import recbole as contrib

HERE = Path(__file__).resolve().parent
SYNTH = ["data.dataset=synthetic", "data.synthetic_users=500", "data.synthetic_items=120", "data.synthetic_genres=5",
         "sae.kind=relu", "sae.n_latents=128", "sae.epochs=2", "sae.l1=0.05", "sae.dead_window=5000"]


def require_recbole() -> None:
    """Skip without RecBole, except under SAEREC_REQUIRE_TOOLS=1 (CI installs it: .ci/run), where a
    failed install must fail here rather than pass as a skip (the policy of conftest.require_tool)."""
    require_module("recbole", contrib.INSTALL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """RecBole's side: the rec part as saerec.inter, RecBole trains, saves .pth + items + reference
    scores; then the documented conversion. Returns the work folder and the histories (item ids)."""
    require_recbole()
    from saerec.config import RunConfig, apply_overrides
    from saerec.data.prepare import prepare
    from saerec.rundir import RunDir

    work = tmp_path_factory.mktemp("recbole")
    prep = prepare(RunDir(work / "scratch"), apply_overrides(RunConfig(), SYNTH))
    rec = prep.sequences("rec")
    (work / "saerec").mkdir()
    with open(work / "saerec" / "saerec.inter", "w") as f:       # timestamps: the order saerec put them in
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for r, user in enumerate(rec.users):
            f.writelines(f"{user}\t{item}\t{t}\n" for t, item in enumerate(prep.index.to_ids(rec.get(r))))
    _, inputs, _ = prep.eval_set("test", 50)
    histories = [prep.index.to_ids(h).tolist() for h in [*inputs[:5], inputs[0][-1:]]]
    (work / "histories.json").write_text(json.dumps(histories))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}    # no spinning threads on 2 cores
    done = subprocess.run([sys.executable, str(HERE / "recbole_train.py"), str(work), "2"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = work / "out"
    assert contrib.main(["convert", str(out / "recbole.pth"), "--items", str(out / "items.json"),
                         "--out", str(work / "converted")]) == 0
    return work, histories


def test_recbole_sasrec_scores_as_recbole_and_runs_every_stage(trained, tmp_path, ray_session):
    from saerec.config import RunConfig
    from saerec.data.prepare import load_prepared
    from saerec.interpret.stage import interpret_stage
    from saerec.model.checkpoint import load_model
    from saerec.rundir import RunDir
    from saerec.activations.stage import extract_stage
    from saerec.sae.stage import sae_stage
    from saerec.steer.edits import Edit
    from saerec.steer.intervene import Steerer

    work, histories = trained
    conv = work / "converted"
    kwargs = json.loads((conv / "factory_kwargs.json").read_text())
    # sizes from the tensors, the rest from RecBole's pickled Config (read as data, never constructed)
    assert kwargs == {"hidden_size": 32, "n_layers": 2, "inner_size": 64, "max_len": 50, "n_heads": 2,
                      "hidden_act": "gelu", "layer_norm_eps": 1e-12}, kwargs
    run = RunDir(tmp_path / "run")
    sets = [a for s in [*SYNTH, f"model.factory_kwargs={json.dumps(kwargs)}"] for a in ("--set", s)]
    assert main(["import-model", "--run", str(run.root), "--arch", contrib.FACTORY, *sets,
                 "--weights", str(conv / "model.safetensors"), "--items", str(conv / "items.json")]) == 0

    model, meta = load_model(run.recommender)
    assert type(model.inner.net).__module__ == "recbole.model.sequential_recommender.sasrec"   # RecBole's own class
    prep = load_prepared(run)
    # RecBole's full_sort_predict (columns: its items 1..) against the import (columns: saerec's dense order)
    recbole_items = json.loads((work / "out" / "items.json").read_text())
    want = np.asarray(json.loads((work / "out" / "reference.json").read_text())["scores"])
    dense = prep.index.to_index([int(i) for i in recbole_items])
    assert sorted(dense) == list(range(1, prep.index.size + 1))         # RecBole knows exactly saerec's items
    want = want[:, np.argsort(dense)]
    x = torch.zeros(len(histories), 50, dtype=torch.long)
    for r, h in enumerate(histories):
        x[r, :len(h)] = torch.as_tensor(prep.index.to_index(h))
    with torch.no_grad():
        got = model.last_scores(x, torch.tensor([len(h) for h in histories]), exclude_seen=False).numpy()
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    assert (np.argsort(-got, 1)[:, :10] == np.argsort(-want, 1)[:, :10]).all()

    metrics = run.read_json("recommender/metrics.json")                 # evaluate ran on the import
    assert metrics["ndcg@10"] > metrics["popularity"]["ndcg@10"], metrics

    cfg = RunConfig.load(run.root / "config.yaml")
    extract_stage(run, cfg)
    sae_stage(run, cfg)
    summary = interpret_stage(run)
    assert summary["mean_top_correlation_sae"] > summary["mean_top_correlation_neurons"]
    steerer = Steerer.from_run(run)
    _, inputs, _ = prep.eval_set("test", model.max_len)
    genre = steerer.catalog.canonical("Sci-Fi")
    col = prep.items.set_index("item_id").loc[prep.index.item_ids, genre].to_numpy().astype(bool)
    base = steerer.recommend(inputs)
    up = steerer.recommend(inputs, [[Edit("Sci-Fi", 8.0, "set")]] * len(inputs))
    assert col[up - 1].mean() > 1.1 * col[base - 1].mean(), (col[up - 1].mean(), col[base - 1].mean())


class _Payload:
    """What a hostile checkpoint would hold: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_safe_reader_runs_no_pickled_code(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"config": _Payload(marker), "state_dict": {"w": torch.arange(6.0).reshape(2, 3)[:, 1:]}},
               tmp_path / "evil.pth", pickle_protocol=4)
    state = contrib.safe_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()
    assert torch.equal(state["w"], torch.tensor([[1.0, 2.0], [4.0, 5.0]]))     # a strided view, rebuilt


@pytest.mark.parametrize("case, message", [
    ("not-zip", "not a torch zip checkpoint"),
    ("not-sasrec", "not a RecBole SASRec state dict: no item_embedding.weight"),
    ("items-short", "item ids, but item_embedding has"),
    ("items-pad", "holds '[PAD]' (row 0)"),
    ("no-heads", "n_heads: not in the checkpoint's config; pass --n-heads"),
])
def test_convert_bad_inputs_are_one_line_and_write_nothing(trained, tmp_path, capsys, case, message):
    work, _ = trained
    pth, items = work / "out" / "recbole.pth", work / "out" / "items.json"
    ids = json.loads(items.read_text())
    if case == "not-zip":
        pth = tmp_path / "x.pth"
        pth.write_bytes(b"not a checkpoint")
    elif case == "not-sasrec":
        pth = tmp_path / "linear.pth"
        torch.save(torch.nn.Linear(2, 2).state_dict(), pth)
    elif case == "items-short":
        items = tmp_path / "items.json"
        items.write_text(json.dumps(ids[1:]))
    elif case == "items-pad":
        items = tmp_path / "items.json"
        items.write_text(json.dumps(["[PAD]", *ids]))
    else:                                          # a bare state dict: no Config to read the heads from
        pth = tmp_path / "bare.pth"
        torch.save(contrib.safe_state_dict(work / "out" / "recbole.pth"), pth)
    rc = contrib.main(["convert", str(pth), "--items", str(items), "--out", str(tmp_path / "conv")])
    err = error_lines(capsys.readouterr().err)
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "conv").exists()
