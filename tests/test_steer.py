"""Steering: edits, batched interventions, probes, the sweep stage, explanations and the CLI, on the
shared synthetic run (planted genres Action, Children, Fantasy, Sci-Fi, Western)."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

from conftest import error_lines
import torch

from saerec.cli import main
from saerec.data.prepare import load_prepared
from saerec.eval.metrics import attribute_shares, ranking_metrics
from saerec.eval.ranking import recommend
from saerec.model import Intervention, Where
from saerec.sae.splice import splice
from saerec.steer import Edit, EditError, Steerer, parse_edit
from saerec.steer.explain import explain
from saerec.steer.intervene import EditTable
from saerec.train.batching import pad_inputs

GENRES = ["Action", "Children", "Fantasy", "Sci-Fi", "Western"]


@pytest.fixture(scope="module")
def steer_setup(interpreted_run):
    run, cfg = interpreted_run
    steerer = Steerer.from_run(run)
    _, inputs, targets = load_prepared(run).eval_set("test", steerer.model.cfg.max_len)
    return run, cfg, steerer, inputs, targets


def test_parse_edit_and_validation():
    assert parse_edit("Sci-Fi=2") == Edit("Sci-Fi", 2.0)
    assert parse_edit("Drama=add:-3") == Edit("Drama", -3.0, "add")
    assert parse_edit("17=scale:0@all") == Edit(17, 0.0, "scale", "all")
    assert parse_edit("probe:decade:1990s=add:4") == Edit("decade:1990s", 4.0, "add", "last", "probe")
    for bad, needle in [("Sci-Fi", "TARGET="), ("Sci-Fi=abc", "not a number"), ("Sci-Fi=mul:2", "mode"),
                        ("Sci-Fi=nan", "finite"), ("Sci-Fi=1e9", "finite"), ("Sci-Fi=2@first", "positions"),
                        ("probe:12=1", "attribute name")]:
        with pytest.raises(EditError, match=needle):
            parse_edit(bad)


@pytest.mark.parametrize("mode,value", [("set", 2.5), ("add", 1.5), ("scale", 3.0), ("set", -2.0)])
def test_edit_moves_only_the_targeted_latent(steer_setup, mode, value):
    _, _, st, inputs, _ = steer_setup
    sae, norm = st.sae, st.norm
    h = torch.randn(6, sae.d_in) * norm.std + norm.mean
    f = sae.encode(norm(h))
    j = int(f.sum(0).argmax())                  # a latent that fires, so scale has something to scale
    expected = {"set": torch.full((6,), value), "add": f[:, j] + value, "scale": f[:, j] * value}[mode]
    table = EditTable.build([[st.resolve(Edit(j, value, mode))]] * 6)
    where = Where(torch.arange(6), torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.bool))
    # reconstruction splice: the decoded codes differ from dec(f) by latent j's change only
    rec = norm(st.edit_fn(table, "reconstruction")(h, where))
    moved = rec - sae.decode(f)
    assert torch.allclose(moved, (expected - f[:, j])[:, None] * sae.W_dec[j], atol=1e-4)
    # delta splice: the same change, and the SAE error term of h is kept
    delta = st.edit_fn(table, "delta")(h, where) - h
    assert torch.allclose(delta, (expected - f[:, j])[:, None] * sae.W_dec[j] * norm.std, atol=1e-4)


def test_attribute_resolves_to_the_catalogs_top_feature(steer_setup):
    run, _, st, _, _ = steer_setup
    pair = pd.read_parquet(run.root / "interpret" / "feature_attribute.parquet")
    for g in GENRES:
        top = int(pair[pair["attribute"] == g].sort_values("correlation", ascending=False)["feature"].iloc[0])
        r = st.resolve(Edit(g.lower(), 1.0))                     # case-insensitive
        assert (r.kind, r.index, r.label) == ("sae", top, g)
    with pytest.raises(EditError, match="known attributes"):
        st.resolve(Edit("Polka", 1.0))
    with pytest.raises(EditError, match="features 0..127"):
        st.resolve(Edit(128, 1.0))


def test_delta_without_edits_is_exact_and_batched_rows_carry_their_own_edits(steer_setup):
    _, _, st, inputs, _ = steer_setup
    base = recommend(st.model, inputs)
    assert np.array_equal(st.recommend(inputs), base)
    assert np.array_equal(st.recommend(inputs, [[Edit("Action", 0.0, "add")]] * len(inputs)), base)
    mixed = [[Edit("Sci-Fi", 4.0)], [], [Edit("Western", 3.0, "add"), Edit("Action", -2.0)], [Edit(5, 0.5, "scale", "all")]]
    together = st.recommend(inputs[:4], mixed)
    for r in range(4):
        assert np.array_equal(together[r], st.recommend([inputs[r]], [mixed[r]])[0])
    assert np.array_equal(together[1], base[1])
    with pytest.raises(EditError, match="twice"):
        st.recommend(inputs[:1], [[Edit("Sci-Fi", 1.0), Edit("sci-fi", 2.0, "add")]])


def test_delta_splice_with_identity_edits_gives_the_original_scores_bit_for_bit(steer_setup):
    """Edits that leave every code as it is (add 0, scale by 1), at the last or at every position, still
    build the intervention and run the delta arithmetic h + std·(c' - c) W_dec: every score must come
    back bit for bit, in the full forward pass and in the batched last-step replay."""
    _, _, st, inputs, _ = steer_setup
    model = st.model
    kinds = [[Edit("Action", 0.0, "add")], [Edit("Sci-Fi", 1.0, "scale", "all")],
             [Edit(5, 0.0, "add", "all"), Edit("Western", 1.0, "scale")]]
    hist = inputs[:48]
    items, lengths = pad_inputs(hist)
    rows = [st.resolve_all(kinds[r % 3]) for r in range(len(hist))]
    iv = st.intervention(rows)
    seen = []
    counted = Intervention(lambda h, where: seen.append(len(h)) or iv.fn(h, where), iv.positions)
    with torch.no_grad():
        base = model.scores(model(items, lengths).hidden)
        same = model.scores(model(items, lengths, interventions={st.layer: counted}).hidden)
    assert iv.positions == "all" and sum(seen) == int(lengths.sum())
    assert torch.equal(same, base)
    # the replay of last-position variants: identity edits against the unedited variant of each history
    last = [kinds[0], [Edit("Fantasy", 1.0, "scale")], []]
    fn = st.edit_fn(EditTable.build([st.resolve_all(v) for v in last]), "delta")
    with torch.inference_mode():
        scores = st._variant_scores(hist, len(last), fn)
    assert torch.equal(scores[:, 0], scores[:, 2]) and torch.equal(scores[:, 1], scores[:, 2])


def test_variant_replay_equals_full_forward(steer_setup):
    _, _, st, inputs, _ = steer_setup
    values = [-4.0, 0.0, 2.0, 6.0]
    for splice in ("delta", "reconstruction"):
        grid = st.recommend_variants(inputs, [[Edit("Fantasy", v)] for v in values] + [[]], splice=splice)
        for i, v in enumerate(values):
            full = st.recommend(inputs, [[Edit("Fantasy", v)]] * len(inputs), splice=splice)
            assert (full == grid[:, i]).all(1).mean() >= 0.99          # float rounding may swap a near tie
        assert (st.recommend(inputs, None, splice=splice) == grid[:, -1]).all(1).mean() >= 0.99


def test_compiled_steerer_gives_the_eager_lists_for_mixed_edits(steer_setup, monkeypatch):
    """Serving's opt-in compiled pass (AOTInductor, the Steerer's DeltaEdit inside): rows with
    different edits (one feature, several, none, every position, the reconstruction splice) in one
    batch get the eager steerer's lists, with and without seen-item exclusion."""
    from saerec.model import compiled

    monkeypatch.setattr(compiled, "CHECK_SHAPES", ((1, 7), (3, 23)))
    run, _, st, inputs, _ = steer_setup
    fast = Steerer.from_run(run)
    assert fast.compile() and isinstance(fast.model.compiled, compiled.CompiledScores)
    kinds = [[], [Edit("Sci-Fi", 3.0, "add")], [Edit("Western", 4.0)], [Edit("Action", 2.0, "add"), Edit("Fantasy", -2.0)],
             [Edit("Children", 0.0, "scale", "all")]]
    for rows, splice, exclude in (([[]] * len(inputs), "delta", True), ([[e] for e in kinds[1]] * len(inputs), "delta", True),
                                  ([kinds[i % 4] for i in range(len(inputs))], "delta", False),
                                  ([kinds[i % 5] for i in range(len(inputs))], "delta", True),
                                  ([kinds[i % 4] for i in range(len(inputs))], "reconstruction", True)):
        want, want_scores = st.recommend(inputs, rows, splice=splice, exclude_seen=exclude, with_scores=True)
        got, got_scores = fast.recommend(inputs, rows, splice=splice, exclude_seen=exclude, with_scores=True)
        assert (got == want).all(1).mean() >= 0.98                      # near-ties may break differently
        assert np.allclose(got_scores, want_scores, atol=1e-4)
    with torch.inference_mode():                                        # the rows that need it ran compiled
        iv = fast.intervention([fast.resolve_all(kinds[i % 4]) for i in range(6)])
        assert fast.model.compiled.takes({fast.layer: iv})
        assert not fast.model.compiled.takes({fast.layer: fast.intervention([fast.resolve_all(kinds[4])])})
    steered = fast.recommend(inputs[:20], [kinds[1]] * 20)
    assert (steered != fast.recommend(inputs[:20])).any()               # the compiled edit took effect


def test_steering_a_planted_genre_feature_raises_its_share(steer_setup):
    _, _, st, inputs, _ = steer_setup
    G = st.items.attribute_matrix(GENRES)
    values = [-10.0, 0.0, 10.0]
    for gi, g in enumerate(GENRES):
        grid = st.recommend_variants(inputs, [[Edit(g, v)] for v in values])
        shares = [attribute_shares(grid[:, i], G)[gi] for i in range(len(values))]
        unsteered = attribute_shares(st.recommend(inputs), G)[gi]
        assert shares[0] < shares[1] < shares[2], (g, shares)
        assert shares[2] > unsteered + 0.04 and shares[0] < unsteered - 0.04, (g, shares, unsteered)


def test_explanation_contributions_sum_to_the_direct_path_change(steer_setup):
    _, _, st, inputs, _ = steer_setup
    model, sae, norm = st.model, st.sae, st.norm
    hist = inputs[0]
    ex = explain(st, hist, k=5, top_features=4)
    assert len(ex.items) == 5 and len(ex.features) <= 4 and (np.diff(ex.features["activation"]) <= 0).all()
    # independently: remove the decoded features from the residual stream, final LayerNorm scale frozen
    items, lengths = pad_inputs([hist])
    with torch.no_grad():
        out = model(items, lengths, capture=[st.layer, "block.1"])
        t = len(hist) - 1
        h, x = out.captured[st.layer][0, t], out.captured["block.1"][0, t]
        decoded = (sae.encode(norm(h[None]))[0] @ sae.W_dec) * norm.std
        sigma = torch.sqrt(x.var(unbiased=False) + model.ln_f.eps)
        y = x - decoded
        before = model.ln_f.weight * (x - x.mean()) / sigma
        after = model.ln_f.weight * (y - y.mean()) / sigma
        E = model.item_weights()[torch.from_numpy(ex.items["index"].to_numpy()) - 1]
        claimed = ((before - after) @ E.T).numpy()
        assert torch.allclose(model.ln_f(x), out.hidden[0, t], atol=1e-5)      # the frozen map is the real LN here
    np.testing.assert_allclose(ex.direct_total, claimed, rtol=1e-4, atol=1e-4)
    c = ex.contributions
    np.testing.assert_allclose(c["contribution"], c["activation"] * c["direct_effect"], rtol=1e-5, atol=1e-6)
    # the total effect of zeroing a feature, recomputed independently: a full forward pass over every
    # position with the feature set to 0 at the last one (saerec.sae.splice, not the Steerer's replay)
    rec = torch.from_numpy(ex.items["index"].to_numpy()) - 1
    with torch.no_grad():
        raw = model.scores(out.hidden[0, t])
        for j in ex.features["feature"].tolist():
            zero = splice(sae, "delta", positions="last", edit=lambda f, w, j=j: f.index_fill(1, torch.tensor([j]), 0.0))
            ablated = model.scores(model(items, lengths, interventions={st.layer: zero}).hidden[0, t])
            want = (raw - ablated)[rec].numpy()
            got = c[c["feature"] == j].sort_values("rank")["ablation_change"].to_numpy()
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
            assert np.abs(want).max() > 1e-3, j                       # the feature moves these scores


def test_steer_eval_stage_tables_plots_and_probes(steer_setup):
    from saerec.steer.stage import steer_eval_stage

    run, cfg, _, _, _ = steer_setup
    cfg = copy.deepcopy(cfg)

    cfg.steer.value_min, cfg.steer.value_max, cfg.steer.value_step = -4.0, 4.0, 2.0
    cfg.steer.probe_rows = 20_000
    s = steer_eval_stage(run, cfg, progress=False)
    out = run.root / "steer"
    for name in ("sweep.parquet", "sweep.csv", "summary.json", "report.md", "probes.safetensors", "probes.json",
                 "fig8a_genre_shares.png", "fig8bcd_metrics.png", "fig9_sae_vs_probe.png",
                 "fig_delta_vs_reconstruction.png", "isolation.parquet", "isolation.json", "isolation.png"):
        assert (out / name).exists(), name
    t = pd.read_parquet(out / "sweep.parquet")
    assert set(t["curve"]) == {"sae/set/delta", "sae/set/reconstruction", "sae/add/delta", "probe/add/delta"}
    assert len(t) == 5 * 4 * 5 and t["ild@10"].between(0, 1).all()
    iso = pd.read_parquet(out / "isolation.parquet")        # +4: the grid's largest value (no +5 in it)
    assert set(iso["curve"]) == set(t["curve"]) and (iso["value"] == 4.0).all()
    assert [r["attribute"] for r in s["isolation"]["scores"]] == s["attributes"]
    assert s["delta_no_edit"]["all_identical"]
    # add 0 through the delta splice is the unsteered model: the table's share equals the baseline
    zero = t[(t["curve"] == "sae/add/delta") & (t["value"] == 0.0)]
    assert np.allclose(zero["ndcg@10"], s["baselines"]["original"]["ndcg@10"], atol=0.01)   # replay: float rounding
    for c in s["curve_checks"]:
        assert c["spearman"] > 0.5, c                      # planted genres steer monotonically, SAE and probe
        lo, hi = c["ndcg_drop_ci95"]
        assert lo <= c["max_ndcg_drop_abs_le_2"] <= hi and np.isfinite(c["max_ndcg_drop_abs_le_2_last_item"]), c
    # several predictions per user; each user's last one is the paper's protocol (the model's test NDCG)
    assert s["points"] > s["users"] == len(steer_setup[3])
    _, _, steerer, inputs, targets = steer_setup
    paper = ranking_metrics(recommend(steerer.model, inputs, k=10), targets, steerer.model.n_items, 10)
    assert s["baselines"]["original"]["ndcg@10_last"] == pytest.approx(paper["ndcg@10"])
    assert all(m["test_auc"] > 0.6 for a, m in s["probe_metrics"].items() if a in GENRES)


def test_ndcg_drop_interval_resamples_users_not_points():
    from saerec.steer.sweep import bootstrap_drop

    rng = np.random.default_rng(1)
    base, steered = rng.random(200), rng.random(200)
    one = bootstrap_drop(base, steered, np.arange(200))
    # every user's point repeated five times: the same users, so the same interval when users are
    # resampled; resampling points as if independent would narrow it
    rep = bootstrap_drop(np.repeat(base, 5), np.repeat(steered, 5), np.repeat(np.arange(200), 5))
    assert rep == pytest.approx(one)
    naive = bootstrap_drop(np.repeat(base, 5), np.repeat(steered, 5))
    assert naive[1] - naive[0] < 0.6 * (one[1] - one[0])


def test_isolation_of_a_hand_made_sweep(tmp_path):
    """Steering Sci-Fi at +5 raises Sci-Fi by 0.3 and moves Action +0.1, Western -0.05 (mean abs
    off-target 0.075, isolation 4); steering Western lowers Western (0.1 -> 0.06) while Action
    rises 0.2 and Sci-Fi stays (isolation -0.04 / 0.1 = -0.4). Values other than +5 are ignored."""
    from saerec.steer.isolation import isolation_matrix, isolation_scores, write_isolation

    genres = ["Action", "Sci-Fi", "Western"]
    base = {"original": {"share:Action": 0.3, "share:Sci-Fi": 0.1, "share:Western": 0.1}}
    rows = [("Sci-Fi", 0.0, 0.3, 0.1, 0.1), ("Sci-Fi", 5.0, 0.4, 0.4, 0.05),
            ("Western", 0.0, 0.3, 0.1, 0.1), ("Western", 5.0, 0.5, 0.1, 0.06)]
    table = pd.DataFrame([{"curve": "sae/set/delta", "attribute": a, "value": v, "share:Action": x,
                           "share:Sci-Fi": y, "share:Western": z} for a, v, x, y, z in rows])
    M = isolation_matrix(table, base["original"], genres, "sae/set/delta", 5.0)
    assert M.index.tolist() == ["Sci-Fi", "Western"] and M.columns.tolist() == genres
    np.testing.assert_allclose(M.to_numpy(), [[0.1, 0.3, -0.05], [0.2, 0.0, -0.04]], atol=1e-12)
    S = isolation_scores(M).set_index("attribute")
    assert S.loc["Sci-Fi", "own_change"] == pytest.approx(0.3)
    assert S.loc["Sci-Fi", "mean_abs_off_target"] == pytest.approx(0.075)
    assert S.loc["Sci-Fi", "isolation"] == pytest.approx(4.0) and S.loc["Sci-Fi", "worst_off_target"] == "Action"
    assert S.loc["Western", "isolation"] == pytest.approx(-0.4)
    summary = write_isolation(table, base, genres, tmp_path, "sae/set/delta")
    assert summary["curves"]["sae/set/delta"]["scores"][0]["isolation"] == pytest.approx(4.0)
    long = pd.read_parquet(tmp_path / "isolation.parquet")
    assert len(long) == 6 and (tmp_path / "isolation.png").stat().st_size > 1000


def test_summarise_a_hand_made_sweep_table():
    """``summarise`` on a table whose answers are worked out by hand, with +5 in the grid: one curve
    that meets every must-show target and one that misses each of them."""
    from saerec.steer.sweep import Points, summarise

    values = [-2.0, -1.0, 0.0, 1.0, 2.0, 5.0]

    def curve(attr, name, share, share_last, ndcg, ndcg_last):
        return pd.DataFrame({"attribute": attr, "curve": name, "target": 7, "value": values, "target_share": share,
                             "target_share_last": share_last, "ndcg@10": ndcg, "ndcg@10_last": ndcg_last})

    table = pd.concat([
        # rises with the value (Spearman 1); share 0.5 at +5 against 0.1 unsteered; worst NDCG at |v| <= 2 is
        # 0.19 at +2 (pooled: 1 - 0.19/0.2 = 5% drop) and 0.2 at -2 on the last items (1 - 0.2/0.25 = 20%);
        # the big NDCG loss at +5 lies outside |v| <= 2
        curve("Sci-Fi", "sae/set/delta", [0.02, 0.05, 0.10, 0.20, 0.30, 0.50], [0.01, 0.04, 0.08, 0.16, 0.24, 0.40],
              [0.195, 0.198, 0.2, 0.199, 0.19, 0.05], [0.2, 0.24, 0.25, 0.25, 0.22, 0.01]),
        # share ranks 5 3 1 2 4 6 against values 1..6: sum d^2 = 26, Spearman 1 - 6*26/(6*35) = 9/35;
        # lift 0.12/0.06 = 2 < 3; NDCG 0.15 at -1 is a 25% drop > 10%
        curve("Western", "probe/add/delta", [0.10, 0.08, 0.06, 0.07, 0.09, 0.12], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
              [0.18, 0.15, 0.2, 0.19, 0.19, 0.19], [0.25] * 6),
    ]).sample(frac=1.0, random_state=0)                        # row order must not matter
    b = np.array([0.5, 0.2, 1.0, 0.3, 0.6, 0.4])               # per-point NDCG of 3 users x 2 points
    points = Points([np.array([1])] * 6, np.ones(6, dtype=np.int64), np.array([0, 0, 1, 1, 2, 2]))
    base = {"original": {"share:Sci-Fi": 0.1, "share_last:Sci-Fi": 0.08, "share:Western": 0.06,
                         "share_last:Western": 0.1, "ndcg@10": 0.2, "ndcg@10_last": 0.25},
            "per_point_ndcg": b}
    # every point of the worst values loses the same fraction: every bootstrap resample gives that drop
    per_point = {("Sci-Fi", "sae/set/delta", 2.0): b * 0.95, ("Sci-Fi", "sae/set/delta", -2.0): b * 0.8}
    by_attribute = {r["attribute"]: r for r in summarise(table, base, per_point, points, k=10)}
    good, bad = by_attribute["Sci-Fi"], by_attribute["Western"]

    assert (good["attribute"], good["curve"], good["target"]) == ("Sci-Fi", "sae/set/delta", 7)
    assert good["spearman"] == pytest.approx(1.0)
    assert good["share_at_5"] == 0.5 and good["lift"] == pytest.approx(5.0)
    assert good["share_at_5_last_item"] == 0.4 and good["lift_last_item"] == pytest.approx(5.0)
    assert good["max_ndcg_drop_abs_le_2"] == pytest.approx(0.05) and good["worst_value"] == 2.0
    assert good["max_ndcg_drop_abs_le_2_last_item"] == pytest.approx(0.2) and good["worst_value_last_item"] == -2.0
    assert good["ndcg_drop_ci95"] == pytest.approx([0.05, 0.05])
    assert good["ndcg_drop_ci95_last_item"] == pytest.approx([0.2, 0.2])
    assert good["monotone_ok"] is True and good["lift_ok"] is True and good["ndcg_ok"] is True

    assert bad["attribute"] == "Western" and bad["spearman"] == pytest.approx(9 / 35)
    assert bad["lift"] == pytest.approx(2.0) and bad["lift_last_item"] == pytest.approx(1.0)
    assert bad["max_ndcg_drop_abs_le_2"] == pytest.approx(0.25) and bad["worst_value"] == -1.0
    assert np.isnan(bad["ndcg_drop_ci95"]).all()               # no per-point NDCG for that value
    assert bad["monotone_ok"] is False and bad["lift_ok"] is False and bad["ndcg_ok"] is False


def test_cli_steer_explain_features(steer_setup, capsys):
    run, _, st, _, _ = steer_setup
    prep = load_prepared(run)
    users, inputs, targets = prep.eval_set("test", st.model.cfg.max_len)
    u = str(users[0])
    # --user reads the test users from sequences.parquet: the held-out item the whole log gives
    assert main(["explain", "--run", str(run.root), "--user", str(users[-1]), "--json", "--k", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["held_out_item"] == int(prep.index.item_ids[targets[-1] - 1])
    assert main(["steer", "--run", str(run.root), "--user", u, "--attribute", "Western", "--value", "6"]) == 0
    out = capsys.readouterr().out
    assert "before:" in out and "after:" in out and "Western" in out
    assert main(["steer", "--run", str(run.root), "--history", "1,2,3,99999", "--edit", "Sci-Fi=add:3",
                 "--edit", "Action=add:-3", "--json", "--k", "5"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert len(doc["after"]) == 5 and doc["unknown_item_ids"] == [99999] and "99999" in cap.err
    assert main(["explain", "--run", str(run.root), "--user", u, "--k", "3"]) == 0
    assert "most active features" in capsys.readouterr().out
    assert main(["features", "--run", str(run.root), "--attribute", "fantasy", "--limit", "3"]) == 0
    assert "top feature for Fantasy" in capsys.readouterr().out
    for argv, needle in [(["--attribute", "Polka", "--value", "1"], "unknown attribute"),
                         (["--attribute", "Action", "--value", "inf"], "finite"),
                         (["--attribute", "Action"], "needs --value"),
                         (["--edit", "Action=1", "--k", "0"], "--k"),
                         (["--edit", "Action=1", "--splice", "both"], "splice")]:
        assert main(["steer", "--run", str(run.root), "--user", u, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(error_lines(err)) == 1, err
    assert main(["steer", "--run", str(run.root), "--user", "-7", "--edit", "Action=1"]) == 2
    assert "not a test user" in capsys.readouterr().err


def test_default_attributes_fall_back_on_datasets_without_them():
    from types import SimpleNamespace

    from saerec.config import SteerConfig
    from saerec.steer.catalog import FeatureCatalog
    from saerec.steer.stage import swept_attributes

    attrs = pd.DataFrame({"attribute": ["Jazz", "Rock", "decade:1990s", "Sci-Fi"], "is_genre": [True, True, False, True],
                          "sae_feature": [3, 1, 2, 0], "sae_correlation": [0.4, 0.7, 0.9, 0.5]})
    feats = pd.DataFrame({"feature": [0, 1, 2, 3], "label": ["Sci-Fi", "Rock", "decade:1990s", "Jazz"]}).set_index("feature")
    st = SimpleNamespace(catalog=FeatureCatalog(attrs, feats, 4))
    assert swept_attributes(st, SteerConfig()) == ["Sci-Fi"]                  # the defaults it has
    st.catalog = FeatureCatalog(attrs[attrs["attribute"] != "Sci-Fi"], feats, 4)
    assert swept_attributes(st, SteerConfig()) == ["Rock", "Jazz", "decade:1990s"]   # genres first, by correlation
    with pytest.raises(EditError, match="unknown attribute"):
        swept_attributes(st, SteerConfig(attributes=["Sci-Fi"]))              # an explicit list must match


def test_points_of_sampled_users_are_read_for_those_users_only(steer_setup):
    """steer-eval draws its users before reading them: the same points as reading every test user
    and sampling afterwards, without holding the others' histories."""
    from saerec.steer.sweep import Points

    run, _, steerer, _, _ = steer_setup
    every = Points.of_test_users(run, steerer.model.max_len, 3)
    some = Points.of_test_users(run, steerer.model.max_len, 3, max_users=5, seed=2)
    want = every.sample_users(5, seed=2)
    assert some.users == 5 < every.users
    assert np.array_equal(some.owner, want.owner) and np.array_equal(some.targets, want.targets)
    assert all(np.array_equal(a, b) for a, b in zip(some.inputs, want.inputs))
    assert Points.of_test_users(run, steerer.model.max_len, 3, max_users=every.users).users == every.users
