"""Real Ray Train runs (gloo, 2 workers) on synthetic data with planted genres."""

import json
import os

import pytest

from saerec.config import RunConfig, apply_overrides
from saerec.data.prepare import prepare
from saerec.eval.evaluate import evaluate_run
from saerec.rundir import RunDir
from saerec.train.ray_train import train_recommender


def synthetic_cfg(**over) -> RunConfig:
    cfg = apply_overrides(RunConfig(), [
        "data.dataset=synthetic", "data.synthetic_users=700", "data.synthetic_items=150",
        "data.synthetic_genres=5", "model.n_layers=2", "model.d_model=32", "model.max_len=50",
        "train.epochs=6", "train.patience=6", "train.batch_tokens=2048", "train.lr=0.003",
    ])
    for k, v in over.items():
        apply_overrides(cfg, [f"{k}={v}"])
    return cfg


def test_two_worker_ray_train_beats_popularity(ray_session, tmp_path):
    cfg = synthetic_cfg(**{"train.num_workers": 2, "train.cpus_per_worker": 1})
    run = RunDir(tmp_path / "run")
    prep = prepare(run, cfg)
    stats = train_recommender(run, cfg, prep)
    assert stats["num_workers"] == 2 and stats["epochs_run"] >= 1
    assert stats["train_tokens_per_second"] > 0 and stats["batch_tokens"] == 2048     # a number pins the budget
    history = json.loads((run.recommender / "history.json").read_text())
    assert len(history) == stats["epochs_run"]
    # the two ranks ran in two worker processes (pids gathered over the process group), not in this one
    assert {tuple(r["pids"]) for r in history} == {tuple(history[0]["pids"])}
    pids = history[0]["pids"]
    assert len(pids) == len(set(pids)) == 2 and os.getpid() not in pids
    assert pids == [int((run.recommender / "ray" / "pids" / f"rank{r}.pid").read_text().split()[0]) for r in (0, 1)]
    assert history[-1]["loss"] < history[0]["loss"]
    m = evaluate_run(run)
    assert m["ndcg@10"] > m["popularity"]["ndcg@10"] * 1.2, m
    assert (run.recommender / "model.safetensors").exists()
    assert (run.recommender / "items.parquet").exists()


def test_prepare_is_reused_when_config_unchanged(tmp_path):
    cfg = synthetic_cfg()
    run = RunDir(tmp_path / "run")
    prepare(run, cfg)
    mtime = (run.data / "interactions.parquet").stat().st_mtime_ns
    prepare(run, cfg)
    assert (run.data / "interactions.parquet").stat().st_mtime_ns == mtime
    cfg.split.seed = 7
    prepare(run, cfg)
    assert (run.data / "interactions.parquet").stat().st_mtime_ns != mtime


def test_streamed_evaluation_equals_in_memory(trained_run, tmp_path):
    """``evaluate_run`` reads only the test users and the rec part's item counts from
    sequences.parquet (issue 21: no stage loads the whole log): the same metrics as the in-memory
    path over the whole interaction log, and it runs with ``interactions.parquet`` gone."""
    import numpy as np

    from conftest import LATER_STAGES, copy_run
    from saerec.data.prepare import item_counts, load_prepared
    from saerec.eval.evaluate import ranking_report
    from saerec.model.checkpoint import load_model

    run, _ = copy_run(trained_run, tmp_path / "run", drop=LATER_STAGES)
    prep = load_prepared(run)
    model, _ = load_model(run.recommender)
    _, inputs, targets = prep.eval_set("test", model.max_len)
    counts = np.bincount(prep.sequences("rec").items, minlength=prep.index.size + 1)[1:]
    in_memory = ranking_report(model, inputs, targets, counts)
    index, streamed_counts = item_counts(run, batch_users=7)           # many batches: the merge is exercised
    assert np.array_equal(index.item_ids, prep.index.item_ids) and np.array_equal(streamed_counts, counts)
    (run.data / "interactions.parquet").unlink()
    streamed = evaluate_run(run)
    assert {k: streamed[k] for k in in_memory} == in_memory and in_memory["test_users"] == len(targets) > 0


def test_train_input_equals_load_prepared(trained_run, tmp_path):
    """The train stage reads sequences.parquet in bounded batches (issue 21: no stage after ``data``
    reads the whole log): the same rec sequences and windows, validation users/inputs/targets,
    in-batch log_q counts, item index, items table and meta as ``load_prepared``, with
    ``interactions.parquet`` gone."""
    import numpy as np

    from conftest import LATER_STAGES, copy_run
    from saerec.data.prepare import load_prepared
    from saerec.data.sequences import concat_sequences, eval_pairs
    from saerec.train.batching import make_windows
    from saerec.train.inputs import TrainInput, read_train_input

    run, cfg = copy_run(trained_run, tmp_path / "run", drop=LATER_STAGES + ("recommender",))
    prep = load_prepared(run)
    max_len = cfg.model.max_len
    want_users, want_inputs, want_targets = prep.eval_set("sae", max_len, users=prep.split.val_users)
    want_windows = make_windows(prep.sequences("rec"), max_len, cfg.train.windows)
    (run.data / "interactions.parquet").unlink()
    for got in (read_train_input(run, batch_users=7), TrainInput.of(prep)):   # many batches; the in-memory path
        assert np.array_equal(got.index.item_ids, prep.index.item_ids)
        rec = concat_sequences(list(got.rec_batches()))
        assert np.array_equal(rec.users, prep.sequences("rec").users)
        assert np.array_equal(rec.items, prep.sequences("rec").items)
        windows = make_windows(rec, max_len, cfg.train.windows)
        assert len(windows) == len(want_windows) > 0
        assert all(np.array_equal(a, b) for a, b in zip(windows, want_windows))
        inputs, targets = eval_pairs(got.val, max_len)
        assert np.array_equal(got.val.users, want_users) and len(want_users) > 0
        assert np.array_equal(targets, want_targets)
        assert all(np.array_equal(a, b) for a, b in zip(inputs, want_inputs)) and len(inputs) == len(want_inputs)
        assert got.items.equals(prep.items) and got.meta == prep.meta


def test_window_file_gives_make_windows_batches(tmp_path):
    """The training windows written batch by batch to a flat file (what each Train worker reads,
    saerec/train/windows.py) are make_windows' windows over the whole rec part, in the same order:
    the same lengths, so a seed gives the same length-bucketed batches and the same collated
    tensors (same losses); the item counts are in-batch log_q's. Read from a folder and from a URI."""
    import numpy as np
    import torch

    from saerec.data.sequences import Sequences
    from saerec.train.batching import bucket_batches, collate, make_windows
    from saerec.train.windows import WindowFile, open_windows, write_windows

    rng = np.random.default_rng(0)
    lens = rng.integers(1, 40, 60)            # length-1 sequences (no window) and longer than max_len + 1
    items = rng.integers(1, 31, int(lens.sum())).astype(np.int32)
    seqs = Sequences(np.arange(60) * 3, np.concatenate([[0], np.cumsum(lens)]), items)
    parts = [seqs.select(u) for u in np.array_split(seqs.users, 7)]       # batches, as sequence_batches reads
    for mode in ("all", "last"):
        want = make_windows(seqs, 9, mode)
        offsets, counts = write_windows(iter(parts), tmp_path / mode, 9, mode, 30)
        np.testing.assert_array_equal(counts, np.bincount(items, minlength=31))
        for got in (WindowFile(tmp_path / mode), open_windows((tmp_path / mode).as_uri())):
            assert len(got) == len(want) == len(offsets) - 1 == ((lens >= 2).sum() if mode == "last" else
                                                                  -(-(lens[lens >= 2] - 1) // 9).sum())
            assert all(np.array_equal(got[i], w) for i, w in enumerate(want))
            lengths = np.array([len(w) - 1 for w in want])
            np.testing.assert_array_equal(got.lengths() - 1, lengths)
            a = bucket_batches(lengths, 64, np.random.default_rng([0, 1]))
            b = bucket_batches(got.lengths() - 1, 64, np.random.default_rng([0, 1]))
            assert len(a) == len(b) > 1 and all(np.array_equal(x, y) for x, y in zip(a, b))
            for idx in a:
                assert all(torch.equal(x, y) for x, y in zip(collate(want, idx), collate(got, idx)))
            got.close()
            assert got.folder.exists() != got.owned                 # a node-local copy is deleted
