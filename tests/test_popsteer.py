"""PopSteer (popularity steering): synthetic users from the head and the tail, effect sizes, the
curve over alpha. Cohen's d and the edit rule have known-answer doctests in saerec/steer/popsteer.py."""

import json

import numpy as np
import pandas as pd
import torch

from saerec.cli import main
from saerec.eval.metrics import popularity_arrays, row_ndcg
from saerec.steer import Steerer
from saerec.steer.popsteer import PopSteerConfig, synthetic_histories


def test_synthetic_users_come_from_the_head_and_the_tail():
    counts = np.array([100, 90, 80, 70, 60, 5, 4, 3, 2, 1, 0, 0, 1, 1, 2])     # items 1..15
    popular, niche = synthetic_histories(counts, PopSteerConfig(users_per_group=20, length=4, seed=3))
    head, _ = popularity_arrays(counts)
    assert len(popular) == len(niche) == 20 and all(len(h) == 4 for h in popular + niche)
    assert all(head[h].all() for h in popular)
    assert all((~head[h]).all() and (counts[h - 1] > 0).all() for h in niche)   # never-seen items left out


def test_popsteer_curve_on_a_run(own_interpreted_run, capsys):
    run, _ = own_interpreted_run
    assert main(["popsteer", "--run", str(run.root), "--alphas", "1,4", "--users-per-group", "60",
                 "--eval-positions", "2"]) == 0
    out = capsys.readouterr().out
    assert "best alpha within a 10% NDCG@10 drop" in out
    table = pd.read_parquet(run.root / "steer" / "popsteer.parquet")
    summary = json.loads((run.root / "steer" / "popsteer.json").read_text())
    assert table["alpha"].tolist() == [0.0, 1.0, 4.0] == summary["alphas"]
    assert (run.root / "steer" / "popsteer.png").stat().st_size > 0
    effects = pd.read_parquet(run.root / "steer" / "popsteer_features.parquet")
    assert (effects["d"] != 0).sum() == table["features"].iloc[1] > 0
    # the SAE-free references, on the same points (tests below check their lists)
    refs = pd.read_parquet(run.root / "steer" / "popsteer_references.parquet")
    assert set(refs["method"]) == {"unsteered", "head_penalty", "linear_shift"}
    assert np.isclose(refs["ndcg@10"].iloc[0], table["ndcg@10"].iloc[0])
    assert set(summary["references"]) >= {"head_penalty", "linear_shift", "shift_r2"}
    assert "reference head penalty (no SAE)" in out

    # alpha 0 is the unsteered model on the same points
    from saerec.data.prepare import read_sequences
    from saerec.data.sequences import eval_points
    from saerec.model.checkpoint import model_index

    steerer = Steerer.from_run(run, probes=False)
    inputs, targets, _ = eval_points(read_sequences(run, "test", model_index(run.recommender)),
                                     steerer.model.max_len, 2)
    plain = steerer.recommend(inputs, None, k=10)
    assert np.isclose(table["ndcg@10"].iloc[0], row_ndcg(plain, targets).mean())
    assert table["ndcg_drop"].iloc[0] == 0
    # the edits act: the strongest alpha changes the lists' popularity make-up
    assert table["long_tail@10"].iloc[2] != table["long_tail@10"].iloc[0]

    # per-user PopSteer on the same points: strength 0 is the unsteered model, its fits use the
    # same features, and every steered feature gets a fitted value
    per_user = pd.read_parquet(run.root / "steer" / "popsteer_per_user.parquet")
    assert per_user["strength"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert np.isclose(per_user["ndcg@10"].iloc[0], table["ndcg@10"].iloc[0]) and per_user["ndcg_drop"].iloc[0] == 0
    assert summary["per_user"]["features"] == table["features"].iloc[1] and "per-user PopSteer" in out
    steered = effects["d"] != 0
    assert (effects.loc[steered, "per_user_mean_abs_value"] > 0).all()
    assert (effects.loc[~steered, "per_user_mean_abs_value"] == 0).all()


def test_popsteer_bad_input_exits_2(interpreted_run, capsys):
    run, _ = interpreted_run
    for flags, msg in ((["--alphas", "1,x"], "--alphas must be comma-separated numbers"),
                       (["--alphas", "-1"], "--alphas must be numbers in 0..100"),
                       (["--users-per-group", "0"], "--users-per-group must be >= 1"),
                       (["--penalties", "0.1,y"], "--penalties must be comma-separated numbers"),
                       (["--penalties", "0"], "--penalties must be numbers in (0, 100]")):
        assert main(["popsteer", "--run", str(run.root), *flags]) == 2
        assert msg in capsys.readouterr().err


def test_reference_curves_on_a_run(own_interpreted_run):
    """The SAE-free references: strength 0 is the plain model, no list holds an item of its own
    history, and the strongest head penalty moves the lists to the tail."""
    from saerec.steer.popref import reference_lists
    from saerec.steer.sweep import Points

    run, _ = own_interpreted_run
    steerer = Steerer.from_run(run, probes=False)
    points = Points.of_test_users(run, steerer.model.max_len, 2)
    hs = [steerer.truncate(h) for h in points.inputs]
    tc = steerer.items.items["train_count"].to_numpy()
    head, _ = popularity_arrays(tc)
    lists, specs, facts = reference_lists(steerer.model, steerer.layer, hs, head, tc > 0, k=10, max_rows=7)
    assert [s["method"] for s in specs].count("unsteered") == 1 and lists.shape == (len(hs), len(specs), 10)
    assert np.array_equal(lists[:, 0], steerer.recommend(points.inputs, None, k=10))
    assert not any(np.isin(lists[u], hs[u]).any() for u in range(len(hs)))
    strongest = [i for i, s in enumerate(specs) if s["method"] == "head_penalty"][-1]
    assert head[lists[:, strongest]].mean() < head[lists[:, 0]].mean()
    assert 0 <= facts["shift_r2"] <= 1 and facts["state_rms"] > 0



def test_per_user_values_put_the_head_penalty_lists_on_top(interpreted_run):
    """Per-user PopSteer's edits at the fixture's block.0 (fitted through the later block's exact
    replay) give many more users the head penalty's top-10 set than the unsteered lists have, and
    stronger penalties fewer head items."""
    from saerec.steer.popfit import PerUserConfig, per_user_lists
    from saerec.steer.popref import head_penalty_topk, masked_scores, final_states
    from saerec.steer.popsteer import effect_sizes, steered_features
    from saerec.steer.sweep import Points

    run, _ = interpreted_run
    steerer = Steerer.from_run(run, probes=False)
    tc = steerer.items.items["train_count"].to_numpy()
    head, _ = popularity_arrays(tc)
    popular, niche = synthetic_histories(tc, PopSteerConfig(users_per_group=60))
    features = steered_features(effect_sizes(steerer, popular, niche))["feature"].to_numpy()
    points = Points.of_test_users(run, steerer.model.max_len, 1)
    cfg = PerUserConfig(penalties=(0.5, 3.0), steps=400)     # the fixture's small model converges slower
    lists, facts = per_user_lists(steerer, points.inputs, features, head, cfg, k=10)
    assert lists.shape == (len(points.inputs), 3, 10) and facts["state_rms"] > 0 and facts["median_p_at_k"] > 0
    assert np.array_equal(lists[:, 0], steerer.recommend(points.inputs, None, k=10))
    share = [head[lists[:, i]].mean() for i in range(3)]
    assert share[0] > share[1] > share[2], share                      # stronger penalties, fewer head items
    hs = [steerer.truncate(h) for h in points.inputs]
    assert not any(np.isin(lists[u], hs[u]).any() for u in range(len(hs)))
    with torch.no_grad():
        scores = masked_scores(steerer.model, final_states(steerer.model, steerer.layer, hs), hs)
        want = head_penalty_topk(scores, torch.from_numpy(head[1:].astype(np.float32)),
                                 [lam * facts["median_p_at_k"] for lam in cfg.penalties], 10).numpy() + 1
    for j in range(2):      # through ln_f a block.0 edit reaches fewer lists than a final-state one
        same = np.mean([set(lists[u, 1 + j]) == set(want[u, j]) for u in range(len(hs))])
        before = np.mean([set(lists[u, 0]) == set(want[u, j]) for u in range(len(hs))])
        assert same >= before + 0.15, (cfg.penalties[j], same, before)


def test_fit_edit_reaches_the_head_penalty_sets_at_the_final_state(interpreted_run):
    """The fit itself, at the final state (a move of the scores): a move of the user state that
    ranks the head penalty's top-10 above every other unseen item, for nearly every user."""
    from saerec.steer.popfit import fit_edit
    from saerec.steer.popref import head_penalty_topk, item_matrix, masked_scores, final_states
    from saerec.steer.sweep import Points

    run, _ = interpreted_run
    steerer = Steerer.from_run(run, probes=False)
    model = steerer.model
    head, _ = popularity_arrays(steerer.items.items["train_count"].to_numpy())
    points = Points.of_test_users(run, model.max_len, 1)
    hs = [steerer.truncate(h) for h in points.inputs]
    with torch.no_grad():
        final = final_states(model, steerer.layer, hs)
        scores = masked_scores(model, final, hs)
        E = item_matrix(model, final.shape[1])
        p_k = torch.softmax(scores, 1).topk(10, dim=1).values[:, -1].median()
        target = head_penalty_topk(scores, torch.from_numpy(head[1:].astype(np.float32)),
                                   [1.5 * p_k], 10)[:, 0]
    rms = float(final.pow(2).sum(1).mean().sqrt())
    moved = scores + fit_edit(scores, lambda e: e @ E.T, target, final.shape[1], rms, steps=400) @ E.T
    got = moved.topk(10, dim=1).indices
    same = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(got, target)])
    before = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(scores.topk(10, dim=1).indices, target)])
    assert same >= 0.9 and before < 0.5, (same, before)
