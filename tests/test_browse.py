"""The feature browser in a real browser (Debian's chromium, headless, through Selenium and the system
chromedriver), the JSON API over real HTTP, and the SAE export in SAELens's layout, on a copy of the
shared interpreted synthetic run with a small steering sweep.

Set SAEREC_SCREENSHOTS=DIR to save a screenshot of every page type (docs/img/ holds committed ones)."""

from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import sys
import statistics
import threading
from pathlib import Path

import numpy as np
import pytest

from saerec.cli import main
from saerec.v1 import recommender_pb2 as pb

from conftest import REPO, error_lines, require_module, require_tool

sys.path.insert(0, str(REPO / "benchmarks"))
from json_api_fuzz import fuzz, post  # noqa: E402  (the fuzz generator, shared with the benchmark)


def read_data(path: Path):
    """A data/<name>.js file's object (``...data["name"]={json};``)."""
    text = path.read_text()
    return json.loads(text[text.index("]=") + 2: text.rindex(";")])


@pytest.fixture(scope="module")
def swept_run(own_interpreted_run):
    """The interpreted run with a small sweep (one attribute, delta splice, three values)."""
    from saerec.steer.stage import steer_eval_stage

    run, cfg = own_interpreted_run
    if not run.has("steer/sweep.parquet"):
        cfg = copy.deepcopy(cfg)
        cfg.steer.attributes, cfg.steer.splices, cfg.steer.probe = ["Sci-Fi"], ["delta"], False
        cfg.steer.value_min, cfg.steer.value_max, cfg.steer.value_step = -4.0, 4.0, 4.0
        steer_eval_stage(run, cfg, progress=False)
    return run


@pytest.fixture(scope="module")
def site(swept_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "html"
    assert main(["report", "--run", str(swept_run.root), "--html", str(out), "--users", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def browser():
    require_tool("chromedriver", "apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--allow-file-access-from-files"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def open_page(driver, url: str, shot: str | None = None) -> None:
    """Load ``url``, wait for the page to render, and fail on any console error."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")                              # drop earlier entries
    driver.get(url)
    # (the body can still be missing right after get() when the same page is loaded again)
    ready = "return document.body && document.body.dataset.ready"
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(ready))
    state = driver.execute_script(ready)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert state == "1" and not errors, (url, state, errors)
    folder = os.environ.get("SAEREC_SCREENSHOTS")
    if folder and shot:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{shot}.png"))


def test_static_site_data(site, swept_run):
    """The export's numbers are the run's: histograms count every test position, a shaded history
    ends at the catalog's top-activating item with its activation, the sweep curve is the sweep's."""
    import pandas as pd

    import re

    # nothing from the network: no absolute URL to load, and the only fetch is the relative API path
    for path in [*site.glob("*.html"), *(site / "assets").iterdir()]:
        text = path.read_text()
        assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", text), path
        assert set(re.findall(r"fetch\(([^,()]+),", text)) <= {'"saerec/v1/" + method'}, path
    info = json.loads((site / "saerec-site.json").read_text())
    meta, index = read_data(site / "data" / "meta.js"), read_data(site / "data" / "index.js")
    cat = pd.read_parquet(swept_run.root / "interpret" / "catalog.parquet").set_index("feature")
    assert info["features"] == meta["features"] == len(index["rows"]) == len(cat)
    positions = swept_run.read_json("interpret/summary.json")["positions"]
    top = int(swept_run.read_parquet("interpret/attributes.parquet").set_index("attribute").at["Sci-Fi", "sae_feature"])
    for j in {0, top, int(cat["firing_frequency"].idxmax())}:
        f = read_data(site / "data" / "features" / f"{j}.js")
        h = f["histogram"]
        assert sum(h["present"]) + sum(h["absent"]) + h["zero_present"] + h["zero_absent"] == positions
        assert sum(h["present"]) + sum(h["absent"]) == pytest.approx(cat.at[j, "firing_frequency"] * positions)
        for t, item, value in zip(f["tops"], cat.at[j, "top_items"], cat.at[j, "top_values"]):
            assert t["items"][-1][0] == item and t["items"][-1][1] == pytest.approx(value, abs=1e-4)
            assert len(t["items"]) == min(12, t["position"] + 1)
        assert len(f["promoted"]) == len(f["demoted"]) == (10 if cat.at[j, "firing_frequency"] > 0 else 0)
        if f["promoted"]:
            assert f["promoted"][0][1] > 0 > f["demoted"][0][1]
    # the first test users, read from sequences.parquet: the users, histories and held-out items
    # the whole log gives (load_prepared), in the same order
    from saerec.data.prepare import load_prepared

    prep = load_prepared(swept_run)
    users, inputs, targets = prep.eval_set("test", 40)
    ids = prep.index.item_ids
    assert [(u["user"], u["history"], u["held_out"]) for u in read_data(site / "data" / "users.js")] == [
        (int(u), ids[x - 1].tolist(), int(ids[t - 1])) for u, x, t in list(zip(users, inputs, targets))[:5]]
    curve = read_data(site / "data" / "features" / f"{top}.js")["steering"]["Sci-Fi"]["sae/set/delta"]
    sweep = swept_run.read_parquet("steer/sweep.parquet")
    sweep = sweep[(sweep["attribute"] == "Sci-Fi") & (sweep["curve"] == "sae/set/delta")].sort_values("value")
    assert curve["share"] == pytest.approx(sweep["target_share"].tolist(), abs=1e-5)


def test_report_refuses_a_folder_that_is_not_a_site(swept_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["report", "--run", str(swept_run.root), "--html", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(error_lines(err)) == 1 and "not an empty folder or a saerec site" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]      # no half-written site


def test_every_page_type_loads_from_file_with_no_console_errors_and_search_filters(site, swept_run, browser):
    from selenium.webdriver.common.by import By

    base = site.as_uri()
    meta = read_data(site / "data" / "meta.js")
    top = int(swept_run.read_parquet("interpret/attributes.parquet").set_index("attribute").at["Sci-Fi", "sae_feature"])
    user = read_data(site / "data" / "users.js")[0]["user"]
    pages = [("index.html", "index"), (f"feature.html?id={top}", "feature"), ("attribute.html", "attributes"),
             ("attribute.html?name=Sci-Fi", "attribute"), ("user.html", "users"), (f"user.html?id={user}", "user"),
             ("evaluation.html", None), ("playground.html", None)]
    for page, shot in pages:
        open_page(browser, f"{base}/{page}", shot)
        if page == "evaluation.html":          # this run has no RUN/saeeval: the page says what to run
            assert f"saerec sae-eval --run {swept_run.root}" in browser.find_element(By.ID, "missing").text
            assert not browser.find_elements(By.ID, "probing")
    # the playground needs the service: from file:// it says how to start it
    assert "saerec browse" in browser.find_element(By.ID, "offline").text
    # feature page: charts drawn, the shaded history's last item is the top-activating one
    open_page(browser, f"{base}/feature.html?id={top}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg rect")) > 10
    assert browser.find_elements(By.CSS_SELECTOR, "#tops .chip.top")
    assert browser.find_elements(By.CSS_SELECTOR, "#steering svg polyline")      # Sci-Fi's top feature was swept
    # index: search, filter and sort
    open_page(browser, f"{base}/index.html")
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#features tr")       # noqa: E731
    assert len(rows()) == min(300, meta["features"])
    box = browser.find_element(By.ID, "search")
    box.send_keys("sci-fi")
    labels = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows()]
    assert 0 < len(labels) < meta["features"] and any("Sci-Fi" in x for x in labels)
    box.clear()
    box.send_keys(f"#{top}")
    assert [r.get_attribute("data-feature") for r in rows()] == [str(top)]
    box.clear()
    box.send_keys("x")
    box.clear()                                                                  # clear() fires no input event
    browser.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    browser.execute_script("const s = document.getElementById('attribute'); s.value = 'Western';"
                           "s.dispatchEvent(new Event('input'))")
    labels = {r.find_elements(By.TAG_NAME, "td")[1].text.replace(" dead", "") for r in rows()}
    assert labels == {"Western"}


@pytest.fixture(scope="module")
def evaluated(own_interpreted_run, swept_run, site, tmp_path_factory):
    """A copy of the swept run whose ``RUN/browse/`` is the export built before sae-eval ran, then
    ``saerec sae-eval`` on it (k = 1 and 2 only: seconds)."""
    from saerec.saeeval.stage import sae_eval_stage

    from conftest import copy_run

    run, cfg = copy_run((swept_run, own_interpreted_run[1]), tmp_path_factory.mktemp("evaluated") / "run",
                        drop=("browse", "saeeval"))
    shutil.copytree(site, run.root / "browse")
    cfg.sae_eval.k_values = [1, 2]
    sae_eval_stage(run, cfg)
    return run


def test_evaluation_page_shows_sae_eval_and_rebuilds_when_it_reruns(evaluated, browser):
    """``saerec browse`` rebuilds a site older than RUN/saeeval; its evaluation page shows the
    summary's probing numbers and the per-attribute k=1 AUCs, and its low-confidence list links to
    feature pages that load and show the feature's label confidence from features.parquet."""
    import pandas as pd
    from selenium.webdriver.common.by import By

    from saerec.browse.server import open_server, stale

    site = evaluated.root / "browse"
    assert stale(evaluated, site)                          # sae-eval ran after the site was built
    server = open_server(evaluated, port=0, users=2, progress=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert not stale(evaluated, site)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        open_page(browser, f"{base}/index.html")
        browser.find_element(By.LINK_TEXT, "SAE evaluation").click()
        open_page(browser, browser.current_url, "evaluation")
        s = evaluated.read_json("saeeval/summary.json")
        cells = lambda k: [td.text for td in browser.find_elements(By.CSS_SELECTOR, f'#probing tr[data-k="{k}"] td')]  # noqa: E731
        for k in ("1", "2"):
            assert cells(k)[1:] == [f"{s['probing'][src][k][m]:.3f}" for m in ("auc", "f1") for src in ("sae", "neurons")]
        full = next(iter(s["probing"]["full_probe"].values()))
        assert cells("full")[1:] == [f"{full['auc']:.3f}", f"{full['f1']:.3f}"]
        probing = evaluated.read_parquet("saeeval/probing.parquet").set_index(["attribute", "source", "k"])
        row = [td.text for td in browser.find_elements(By.CSS_SELECTOR, '#k1 tr[data-attribute="Sci-Fi"] td')]
        sae, neurons = probing.at[("Sci-Fi", "sae", 1), "auc"], probing.at[("Sci-Fi", "neurons", 1), "auc"]
        assert row[1] == f"#{probing.at[('Sci-Fi', 'sae', 1), 'units'][0]}" and row[2] == f"{sae:.3f}"
        assert row[4] == f"{neurons:.3f}" and row[5] == ("SAE" if sae > neurons else "neuron" if neurons > sae else "tie")
        assert browser.find_elements(By.CSS_SELECTOR, "#plots img")[0].get_attribute("naturalWidth") != "0"
        # a feature shown unlabelled: its link opens its page, which gives sae-eval's confidence
        link = browser.find_element(By.CSS_SELECTOR, "#low-confidence tr a")
        j = int(link.text.lstrip("#"))
        link.click()
        open_page(browser, browser.current_url)
        assert browser.current_url.endswith(f"feature.html?id={j}")
        feats = pd.read_parquet(evaluated.root / "saeeval" / "features.parquet").set_index("feature")
        assert not feats.at[j, "labelled"] and browser.find_element(By.ID, "unlabelled")
        conf = browser.find_element(By.XPATH, "//table[@id='metrics']//tr[th='label confidence']/td").text
        assert conf == f"{feats.at[j, 'label_confidence']:.3f}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(swept_run, site):
    """``saerec browse``'s server on a free port, in a thread of this process."""
    from saerec.browse.server import open_server

    server = open_server(swept_run, port=0, users=5, progress=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def through_serve(swept_run, site):
    """``saerec serve`` on the run (Ray Serve: gRPC and the JSON API on its HTTP proxy), and a
    ``saerec browse --service`` server whose API calls go there: (browse port, gRPC stub)."""
    from saerec.browse.server import open_server

    from test_serving import serving

    with serving(swept_run) as (stub, _, http_port):
        server = open_server(swept_run, port=0, users=5, progress=False, service_url=f"http://127.0.0.1:{http_port}")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1], stub
        server.shutdown()
        server.server_close()


def test_playground_slider_changes_the_list_like_the_same_grpc_request(through_serve, browser):
    """The playground of ``saerec browse --service`` steers through Serve's JSON API; its list is
    the answer to the same request over real gRPC to the same application."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port, stub = through_serve
    base = f"http://127.0.0.1:{port}"
    open_page(browser, f"{base}/playground.html", "playground")
    seq = lambda: browser.execute_script("return document.getElementById('steered').dataset.seq || ''")  # noqa: E731
    WebDriverWait(browser, 30).until(lambda d: seq())
    ids = lambda box: [int(li.get_attribute("data-item")) for li in browser.find_elements(By.CSS_SELECTOR, f"#{box} li")]  # noqa: E731
    plain, before = ids("plain"), seq()
    assert ids("steered") == plain and len(plain) == 10                       # every slider at 0: no edit
    browser.execute_script("const s = document.querySelector('#sliders input[data-target=\"Sci-Fi\"]');"
                           "s.value = 10; s.dispatchEvent(new Event('input'))")
    WebDriverWait(browser, 30).until(lambda d: seq() != before)
    assert not browser.get_log("browser") or all(e["level"] not in ("SEVERE", "ERROR") for e in browser.get_log("browser"))
    steered = ids("steered")
    assert steered != plain
    sent = json.loads(browser.execute_script("return document.getElementById('steered').dataset.request"))
    assert sent["steering"] == [{"attribute": "Sci-Fi", "value": 10, "mode": "STEERING_MODE_ADD"}]
    # the same request over real gRPC to the served application
    want = stub.Recommend(pb.RecommendRequest(
        history=sent["history"], k=10, steering=[pb.Steering(attribute="Sci-Fi", value=10.0, mode=pb.STEERING_MODE_ADD)]),
        timeout=30)
    assert steered == [it.item_id for it in want.items]
    # feature page load time over HTTP: median of 5 (navigation start to rendered)
    top = want.applied_steering[0].feature_id
    times = []
    for _ in range(5):
        open_page(browser, f"{base}/feature.html?id={top}")
        times.append(float(browser.execute_script("return document.body.dataset.readyMs")))
    print(f"feature page load, median of 5: {statistics.median(times):.0f} ms ({', '.join(f'{t:.0f}' for t in times)})")
    assert statistics.median(times) < 1000


def test_json_api_mirrors_the_service_and_rejects_bad_input_with_400(served, swept_run):
    from saerec.serving.service import InvalidRequest, RecommenderService

    port, server = served
    service = RecommenderService(swept_run)
    history = [int(i) for i in service.items.item_ids[:5]]
    status, body = post(port, "/saerec/v1/recommend", {"history": [str(i) for i in history], "k": 3,
                                                        "steering": [{"featureId": 1, "value": 2, "mode": "STEERING_MODE_ADD"}]})
    want = service.recommend(pb.RecommendRequest(history=history, k=3, steering=[
        pb.Steering(feature_id=1, value=2, mode=pb.STEERING_MODE_ADD)]))
    assert status == 200 and [int(i["itemId"]) for i in body["items"]] == [it.item_id for it in want.items]
    assert body["appliedSteering"][0]["mode"] == "STEERING_MODE_ADD"
    status, body = post(port, "/saerec/v1/recommend-batch", {"requests": [{"history": history, "k": 3}, {"history": history, "k": 0,
                                                                      "steering": [{"attribute": "Nope", "value": 1}]}]})
    assert status == 200 and [int(i["itemId"]) for i in body["results"][0]["response"]["items"]] == \
        [it.item_id for it in service.recommend(pb.RecommendRequest(history=history, k=3)).items]
    assert body["results"][1]["error"]["field"] == "steering[0].attribute"
    status, body = post(port, "/saerec/v1/features", {"attribute": "sci-fi", "page_size": 2})
    assert status == 200 and len(body["features"]) <= 2 and all(f["label"] == "Sci-Fi" for f in body["features"])
    status, body = post(port, "/saerec/v1/explain", {"history": history, "k": 2})
    assert status == 200 and len(body["items"]) == 2
    # semantic errors: HTTP 400 with exactly the message gRPC sends as INVALID_ARGUMENT details
    for req in [{"history": history, "k": 5000}, {"history": history, "steering": [{"attribute": "Nope", "value": 1}]},
                {"history": history, "steering": [{"featureId": 99999, "value": 1}]},
                {"history": history, "steering": [{"featureId": 1, "value": "NaN"}]}]:
        status, body = post(port, "/saerec/v1/recommend", req)
        from google.protobuf.json_format import ParseDict
        with pytest.raises(InvalidRequest) as grpc_side:
            service.prepare(ParseDict(req, pb.RecommendRequest()))
        assert status == 400 and body["error"]["message"] == str(grpc_side.value), (req, body)
    # malformed bodies: 400, the message starting with the field
    for raw, field in [(b"{not json", "body:"), (b"[1, 2]", "body:"), (b'{"k": "ten"}', "k:"),
                       (b'{"colour": 1}', "colour:"), (b'{"steering": [{"value": "x"}]}', "steering[0].value:"),
                       (b'{"steering": [{"mode": "LOUD", "value": 1}]}', "steering[0].mode:"), (b"\xff\xfe", "body:")]:
        status, body = post(port, "/saerec/v1/recommend", raw)
        assert status == 400 and body["error"]["message"].startswith(field), (raw, body)
    assert post(port, "/saerec/v1/nope", {})[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/saerec/v1/recommend")
    assert conn.getresponse().status == 405
    conn.close()


def test_json_api_fuzz_never_answers_5xx(served, swept_run):
    from saerec.data.prepare import load_prepared

    port, _ = served
    prep = load_prepared(swept_run)
    _, inputs, _ = prep.eval_set("test", 40)
    history = prep.index.item_ids[np.asarray(inputs[0][:8]) - 1].tolist()
    codes, broken = fuzz(port, history, 2000, 128, seed=0, routes=["recommend", "features", "feature", "explain"])
    print("fuzz statuses:", codes)
    assert not broken and codes.get(200, 0) > 100 and codes.get(400, 0) > 100, (codes, broken[:3])



def sample_activations(run, rows: int = 2000):
    from saerec.activations.store import iter_batches, to_tensor

    return to_tensor(next(iter(iter_batches(run.root / "activations" / "test", ("activation",), rows))).column("activation"))


def test_export_saelens_layout_round_trips_through_saerec(swept_run, tmp_path):
    """The folded weights encode raw activations as saerec encodes normalised ones, and the import reads them back."""
    import torch

    from saerec.sae.base import load_sae
    from saerec.sae.saelens import export_saelens, import_saelens

    out = tmp_path / "saelens"
    assert main(["export", "--run", str(swept_run.root), "--format", "saelens", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]
    sae, _ = load_sae(swept_run.root / "sae")
    x = sample_activations(swept_run)
    back = import_saelens(out)
    with torch.no_grad():
        want = sae.encode(sae.normalizer(x))
        got = back.encode(x)
        assert (want > 0).float().mean() > 0.01
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(back.decode(got), sae.normalizer.inverse(sae.decode(want)), atol=1e-4, rtol=1e-4)
    for kind, other in other_kinds(x.shape[1], x):
        export_saelens(other, {"layer": "block.0"}, tmp_path / kind)
        with torch.no_grad():
            torch.testing.assert_close(import_saelens(tmp_path / kind).encode(x), other.encode(other.normalizer(x)),
                                       atol=1e-4, rtol=1e-4, msg=kind)
    assert main(["export", "--run", str(swept_run.root), "--format", "onnx", str(tmp_path / "x")]) == 2


def other_kinds(d_in: int, x):
    """SAEs of every kind with random weights and a per-dimension normaliser (no training needed:
    the export's arithmetic is what is checked), each with codes that are neither all zero nor dense."""
    import torch

    from saerec.sae.base import KINDS, SAEConfig, build_sae
    from saerec.sae.normalize import Normalizer

    g = torch.Generator().manual_seed(0)
    for kind in KINDS:
        sae = build_sae(d_in, SAEConfig(kind=kind, n_latents=96, k=8))
        sae.normalizer = Normalizer("per_dim", x.mean(0), x.std(0) + 0.1)
        with torch.no_grad():
            sae.b_enc.copy_(torch.randn(96, generator=g) * 0.1)
            sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.1)
            if kind == "jumprelu":
                sae.log_threshold.copy_((torch.rand(96, generator=g) * 0.5 + 0.05).log())
            if kind in ("batchtopk", "matryoshka"):
                sae.threshold.fill_(0.3)
        yield kind, sae.eval()


def test_sae_lens_loads_the_export_and_reproduces_the_codes(swept_run, tmp_path):
    """The real sae-lens package (optional extra ``saelens``; skipped without it) reads the folder and
    its codes and reconstructions equal saerec's within 1e-4: the run's SAE, and every kind."""
    sae_lens = require_module("sae_lens", "pip install -e '.[saelens]'; .ci/run installs it")
    import torch

    from saerec.sae.base import load_sae
    from saerec.sae.saelens import export_saelens

    out = tmp_path / "saelens"
    assert main(["export", "--run", str(swept_run.root), "--format", "saelens", str(out)]) == 0
    x = sample_activations(swept_run)
    saes = [("run", load_sae(swept_run.root / "sae")[0], out)]
    for kind, sae in other_kinds(x.shape[1], x):
        export_saelens(sae, {"layer": "block.0"}, tmp_path / kind)
        saes.append((kind, sae, tmp_path / kind))
    for kind, sae, folder in saes:
        loaded = sae_lens.SAE.load_from_disk(str(folder))
        with torch.no_grad():
            want = sae.encode(sae.normalizer(x))
            got = loaded.encode(x)
            assert 0.005 < (want > 0).float().mean() < 0.9, kind
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=kind)   # float32 folding: within 1e-4
            torch.testing.assert_close(loaded.decode(got), sae.normalizer.inverse(sae.decode(want)), atol=1e-4, rtol=1e-4,
                                       msg=kind)
            print(f"{kind}: max |code difference| {float((got - want).abs().max()):.2e}")
