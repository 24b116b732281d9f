"""The SAE evaluation suite: each metric against a hand-made case with a known answer, and the stage
end to end on the session's synthetic run (its planted genres), checked against an independent
recomputation from the activations."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
import torch

from saerec.saeeval import collect, metrics
from saerec.saeeval.logreg import fit_logistic


def test_metric_formulas_on_hand_made_cases():
    """Doctests: mean difference, top-k, feature splits, absorption (absorbed and not), rule
    precision/recall/F1, MCC with a known matching, direction recovery."""
    res = doctest.testmod(metrics, raise_on_error=False)
    assert res.attempted >= 12 and res.failed == 0


def test_logistic_matches_scikit_learn_balanced():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 1500, 4, generator=g)
    y = (X @ torch.randn(2, 4, 1, generator=g))[:, :, 0] + 0.5 * torch.randn(2, 1500, generator=g) > 1.0
    w, b = fit_logistic(X, y, C=0.5)
    for a in range(2):
        ref = LogisticRegression(C=0.5, class_weight="balanced", solver="newton-cholesky", tol=1e-12,
                                 max_iter=500).fit(X[a].numpy(), y[a].numpy())
        assert np.allclose(w[a].numpy(), ref.coef_[0], atol=1e-5)
        assert abs(float(b[a]) - ref.intercept_[0]) < 1e-5
    # one class only: no direction
    w, _ = fit_logistic(X[:1], torch.zeros(1, 1500, dtype=torch.bool))
    assert float(w.abs().max()) == 0.0


def test_fold_sums_are_exact():
    """Correlations, class-mean differences and firing counts per fold equal numpy on the raw rows."""
    rng = np.random.default_rng(0)
    N, m, d, A = 300, 6, 3, 2
    codes = np.maximum(rng.normal(size=(N, m)), 0).astype(np.float32)
    x = rng.normal(size=(N, d)).astype(np.float32)
    y = rng.random((N, A)) < 0.3
    fold = rng.integers(0, 2, N)
    sums = collect.FoldSums(m, d, A)
    for lo in range(0, N, 128):          # several batches
        s = slice(lo, lo + 128)
        sums.update(collect.Batch(fold[s], torch.from_numpy(x[s]), torch.from_numpy(codes[s]), torch.from_numpy(y[s])))
    f0 = fold == 0
    want = np.array([[np.corrcoef(codes[f0, j], y[f0, a])[0, 1] for a in range(A)] for j in range(m)])
    assert np.allclose(sums.correlation((0,)), want, atol=1e-5)
    want = np.stack([metrics.class_mean_difference(x[fold == 1], y[fold == 1, a]) for a in range(A)], 1)
    assert np.allclose(sums.mean_difference((1,), neurons=True), want, atol=1e-5)
    fy, fire, has, n = sums.firing((1,))
    f1 = fold == 1
    assert np.array_equal(fire, (codes[f1] > 0).sum(0)) and n == f1.sum()
    assert np.array_equal(fy, (codes[f1] > 0).T.astype(int) @ y[f1].astype(int)) and np.array_equal(has, y[f1].sum(0))


def test_reservoir_keeps_a_bounded_uniform_sample():
    res = collect.Reservoir(50, np.array([1, 3]), seed=0)
    for lo in range(0, 400, 64):
        n = min(64, 400 - lo)
        ids = np.arange(lo, lo + n, dtype=np.float32)
        res.update(collect.Batch(np.zeros(n, dtype=np.int64), torch.from_numpy(ids[:, None]),
                                 torch.from_numpy(np.tile(ids[:, None], (1, 4))), torch.zeros(n, 1, dtype=torch.bool)))
    s = res.result()
    assert len(s.fold) == 50 and s.codes.shape == (50, 2)
    assert np.array_equal(s.codes[:, 0], s.x[:, 0]) and len(np.unique(s.x)) == 50
    assert s.x.max() > 200                       # not just the first rows


@pytest.fixture(scope="module")
def evaluated(own_interpreted_run):
    from saerec.saeeval.stage import sae_eval_stage

    run, cfg = own_interpreted_run
    lines: list[str] = []
    summary = sae_eval_stage(run, cfg, printer=lines.append)
    return run, cfg, summary, lines


def _test_positions(run):
    """Every test position's fold, codes and attributes, read directly (the test's own path)."""
    from saerec.activations.store import iter_batches, to_tensor
    from saerec.data.attributes import attribute_columns
    from saerec.sae.base import load_sae

    sae, _ = load_sae(run.root / "sae")
    items = pd.read_parquet(run.recommender / "items.parquet")
    attrs = attribute_columns(items)
    fold, codes, ys = [], [], []
    for rb in iter_batches(run.root / "activations" / "test", ("user_id", "item_id", "activation")):
        with torch.no_grad():
            codes.append(sae.encode(sae.normalizer(to_tensor(rb.column("activation")))).numpy())
        fold.append(rb.column("user_id").to_numpy() % 2)
        ys.append(items.set_index("item_id").loc[rb.column("item_id").to_numpy(), attrs].to_numpy(dtype=bool))
    return np.concatenate(fold), np.concatenate(codes), np.concatenate(ys), attrs


def test_sae_eval_stage_end_to_end(evaluated):
    run, cfg, s, lines = evaluated
    out = run.root / "saeeval"
    for f in ("probing.parquet", "attributes.parquet", "features.parquet", "summary.json", "report.md",
              "sparse_probing.png"):
        assert (out / f).stat().st_size > 0, f
    assert any(line.startswith("sae-eval 1/3 sums:") and "positions/s" in line for line in lines)
    probing = pd.read_parquet(out / "probing.parquet")
    assert set(probing["source"]) == {"sae", "neurons", "full_probe"}
    assert sorted(probing.loc[probing["source"] == "sae", "k"].unique()) == sorted(cfg.sae_eval.k_values)
    fold, codes, y, attrs = _test_positions(run)

    # the k=1 SAE probe of one genre, refitted here with scikit-learn: fold 0 fits, fold 1 scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    row = probing[(probing["source"] == "sae") & (probing["k"] == 1) & (probing["attribute"] == "Action")].iloc[0]
    j, a = int(row["units"][0]), attrs.index("Action")
    clf = LogisticRegression(class_weight="balanced", solver="newton-cholesky", tol=1e-10).fit(
        codes[fold == 0][:, [j]], y[fold == 0, a])
    want = roc_auc_score(y[fold == 1, a], clf.decision_function(codes[fold == 1][:, [j]]))
    assert abs(row["auc"] - want) < 1e-3

    # label confidence: labels chosen by correlation on one fold, the rule scored on the other, F1
    # corrected for the F1 of a feature firing at its rate independently of the label
    feats = pd.read_parquet(out / "features.parquet").set_index("feature")
    fires = codes > 0
    conf = np.zeros(codes.shape[1])
    for fit, score in ((0, 1), (1, 0)):
        cf, cy = codes[fold == fit], y[fold == fit].astype(float)
        corr = np.nan_to_num(np.array([[np.corrcoef(cf[:, j], cy[:, a])[0, 1] if cf[:, j].std() > 0 else 0.0
                                        for a in range(len(attrs))] for j in range(codes.shape[1])]))
        lab = corr.argmax(1)
        fs, ys = fires[fold == score], y[fold == score]
        tp = (fs & ys[:, lab]).sum(0)
        prec = np.divide(tp, fs.sum(0), out=np.zeros(len(lab)), where=fs.sum(0) > 0)
        rec = np.divide(tp, ys[:, lab].sum(0), out=np.zeros(len(lab)), where=ys[:, lab].sum(0) > 0)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(len(lab)), where=prec + rec > 0)
        share, rate = ys[:, lab].mean(0), fs.mean(0)          # chance: precision = share, recall = rate
        f0 = np.divide(2 * share * rate, share + rate, out=np.zeros(len(lab)), where=share + rate > 0)
        conf += np.clip((f1 - f0) / (1 - f0), 0, 1) / 2
    assert np.allclose(feats["label_confidence"].to_numpy(), conf, atol=1e-4)
    assert (feats["labelled"] == (feats["label_confidence"] >= cfg.sae_eval.min_label_confidence)).all()

    # planted genres of the synthetic data: both scores present and in range
    p = s["planted"]
    assert set(p["planted"]) == {"Action", "Children", "Fantasy", "Sci-Fi", "Western"}
    assert 0 < p["mcc_sae"] <= 1 and 0 < p["mcc_neurons"] <= 1
    assert 0 <= s["mean_absorption_fraction"] <= 1 and s["sample_rows"] == s["positions"]


def test_tune_columns_are_the_stages_numbers_and_bounded(evaluated):
    """``saerec tune``'s per-trial sae-eval columns on every test position equal the stage's own
    (same passes; the stage's sample holds every position here); with a bound, the passes read
    exactly that many positions."""
    from saerec.data.attributes import attribute_columns
    from saerec.sae.base import load_sae
    from saerec.saeeval.stage import run_passes
    from saerec.tuning.trial import suite_columns

    run, cfg, s, _ = evaluated
    sae, _ = load_sae(run.root / "sae")
    items = pd.read_parquet(run.recommender / "items.parquet")
    got = suite_columns(sae, run.root / "activations" / "test", items, s["positions"])
    probing = pd.read_parquet(run.root / "saeeval" / "probing.parquet")
    k1 = probing[probing["k"] == 1].groupby("source")["auc"].mean()
    assert got["k1_auc_sae"] == pytest.approx(k1["sae"]) and got["k1_auc_neurons"] == pytest.approx(k1["neurons"])
    assert got["mean_absorption"] == pytest.approx(s["mean_absorption_fraction"])
    sums, sample, *_ = run_passes(run.root / "activations" / "test", sae, items, attribute_columns(items), [1],
                                  sample_rows=10_000, batch_rows=512, printer=lambda _: None, max_rows=1500)
    assert float(sums.n.sum()) == 1500 and len(sample.fold) == 1500


def test_label_confidence_reaches_catalog_explain_and_cli(evaluated, capsys):
    """Features below the threshold are shown as unlabelled (with their top items in explain); the
    others keep their label; the confidence is in the catalog table and the explanation."""
    from saerec.cli import main
    from saerec.steer import Steerer
    from saerec.steer.catalog import FeatureCatalog
    from saerec.steer.explain import explain

    run, _, _, _ = evaluated
    path = run.root / "saeeval" / "features.parquet"
    original = path.read_bytes()
    feats = pd.read_parquet(path)
    feats["labelled"] = feats["feature"] % 2 == 0            # half the features unlabelled, known which
    feats.to_parquet(path, index=False)
    try:
        cat = FeatureCatalog.load(run)
        raw = run.read_parquet("interpret/catalog.parquet").set_index("feature")["label"]
        for j in range(cat.n_features):
            assert cat.label(j) == ("unlabelled" if j % 2 else raw[j])
            assert cat.confidence(j) == pytest.approx(feats.set_index("feature").at[j, "label_confidence"])
        table = cat.table()
        assert "label_confidence" in table and (table["label"] == "unlabelled").sum() == cat.n_features // 2
        assert set(table.loc[table["feature"] % 2 == 1, "label"]) == {"unlabelled"}
        steerer = Steerer.from_run(run)
        ex = explain(steerer, np.arange(1, 9), k=5, top_features=8)
        assert not ex.features["label_confidence"].isna().any()
        for r in ex.features.itertuples():
            assert (r.label == "unlabelled") == (r.feature % 2 == 1)
            assert len(r.top_items) >= 1 and all(isinstance(t, str) for t in r.top_items)
        assert main(["features", "--run", str(run.root), "--limit", "400"]) == 0
        out = capsys.readouterr().out
        assert "label_confidence" in out and "unlabelled" in out
    finally:
        path.write_bytes(original)
