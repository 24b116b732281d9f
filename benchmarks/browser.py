"""The feature browser on a finished run: export time and size, and page load times in Chromium.

Writes the static site (``saerec report --html``) into a temporary folder and records its size and
file count (the issue's target: under 30 MB for 2,048 features), then loads pages in Debian's
headless ``chromium`` (Selenium, system ``chromedriver``) from ``file://``: the index, and the feature
page of the best Sci-Fi feature (or feature 0), ``--loads`` times each. A page's load time is from
navigation start to the page's own "rendered" mark (``document.body.dataset.readyMs``). Medians and
every value go to JSON.

    python benchmarks/browser.py --run runs/main --loads 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from saerec.browse.data import site_data
from saerec.browse.evaluation import images
from saerec.browse.site import write_site
from saerec.rundir import RunDir


def load_times(url: str, loads: int) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        out = []
        for _ in range(loads):
            driver.get(url)
            WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
            out.append(float(driver.execute_script("return document.body.dataset.readyMs")))
        return out
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/browser.json")
    args = ap.parse_args()
    run = RunDir(args.run)
    tmp = Path(tempfile.mkdtemp(prefix="saerec-site-"))
    try:
        t = time.time()
        files = site_data(run, users=args.users)
        prep_s = time.time() - t
        info = write_site(tmp / "site", files, str(run.root), images(run))
        write_s = time.time() - t - prep_s
        attrs = {a["name"]: a for a in files["attributes"]}
        feature = attrs["Sci-Fi"]["sae"]["feature"] if "Sci-Fi" in attrs else 0
        base = (tmp / "site").as_uri()
        pages = {"index": load_times(f"{base}/index.html", args.loads),
                 f"feature {feature}": load_times(f"{base}/feature.html?id={feature}", args.loads)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"run": str(run.root), "features": info["features"], "files": info["files"], "bytes": info["bytes"],
              "megabytes": round(info["bytes"] / 1e6, 2), "data_seconds": round(prep_s, 1),
              "write_seconds": round(write_s, 1),
              "load_ms": {k: {"median": statistics.median(v), "values": v} for k, v in pages.items()},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
