"""Screenshots of every page type of the feature browser on a finished run (what docs/img/ holds).

The test suite can save the same page types from its tiny synthetic run (``SAEREC_SCREENSHOTS=DIR``),
whose items are called "Item 28"; a person deciding whether to use saerec would rather see a real
run's films. This script serves ``saerec browse``'s site for ``--run`` in this process (no Ray: the
in-process service answers the playground's API), drives Debian's headless ``chromium`` through its
``chromedriver``, and saves one PNG per page type. On the playground it moves one attribute's slider,
so the steered list differs from the unsteered one.

    python scripts/screenshots.py --run runs/main --out docs/img --attribute Sci-Fi --value 6
    python scripts/screenshots.py --run runs/main --out docs/img --pages evaluation   # one page type only

It writes ``RUN/browse/`` (the site it serves) when that is missing or stale, so point it at a copy
of a run you must not change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

from saerec.browse.server import open_server
from saerec.rundir import A, RunDir


PAGES = ("index", "feature", "attributes", "attribute", "users", "user", "evaluation", "playground")


def driver(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def rendered(browser, url: str) -> None:
    """Load ``url`` and wait for the page's own "rendered" mark (what the browser tests wait for)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body && document.body.dataset.ready"))


def steer_playground(browser, attribute: str, value: float) -> None:
    """Move ``attribute``'s slider and wait for the steered list to come back from the API."""
    from selenium.webdriver.support.ui import WebDriverWait

    seq = "return document.getElementById('steered').dataset.seq || ''"
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(seq))
    before = browser.execute_script(seq)
    moved = browser.execute_script(
        "const s = document.querySelector(`#sliders input[data-target=\"${arguments[0]}\"]`);"
        "if (!s) return false; s.value = arguments[1]; s.dispatchEvent(new Event('input')); return true",
        attribute, value)
    if not moved:
        raise SystemExit(f"--attribute {attribute}: the playground has no slider for it")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(seq) != before)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run with interpret and steer-eval done")
    ap.add_argument("--out", default="docs/img", help="folder for the PNGs (default docs/img)")
    ap.add_argument("--attribute", default="Sci-Fi", help="the attribute whose feature page and slider are shown")
    ap.add_argument("--value", type=float, default=6.0, help="the playground slider's value")
    ap.add_argument("--users", type=int, default=20, help="test users on the site's user pages")
    ap.add_argument("--size", default="1280x1000", help="window size, WIDTHxHEIGHT")
    ap.add_argument("--pages", nargs="+", choices=PAGES, default=list(PAGES), help="page types to save (default all)")
    args = ap.parse_args(argv)
    run = RunDir(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = open_server(run, port=0, users=args.users)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    attrs = run.read_parquet(A.ATTRIBUTES).set_index("attribute")
    feature = int(attrs.at[args.attribute, "sae_feature"])
    users = (run.path(A.BROWSE) / "data" / "users.js").read_text()      # data["users"]=[{"user": ...}, ...];
    user = json.loads(users[users.index("]=") + 2: users.rindex(";")])[0]["user"]
    urls = {"index": "index.html", "feature": f"feature.html?id={feature}", "attributes": "attribute.html",
            "attribute": f"attribute.html?name={args.attribute}", "users": "user.html",
            "user": f"user.html?id={user}", "evaluation": "evaluation.html", "playground": "playground.html"}
    pages = [(name, urls[name]) for name in PAGES if name in args.pages]
    width, height = (int(v) for v in args.size.split("x"))
    browser = driver(width, height)
    try:
        for name, page in pages:
            rendered(browser, f"{base}/{page}")
            if name == "playground":                   # taller: a real history fills the top half
                browser.set_window_size(width, int(height * 1.5))
                steer_playground(browser, args.attribute, args.value)
            browser.save_screenshot(str(out / f"{name}.png"))
            print(f"{name}: {out / (name + '.png')}", flush=True)
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
