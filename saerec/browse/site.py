"""Write the feature browser as a static folder that opens from file:// with no server and no network.

Layout::

    OUT/index.html feature.html attribute.html user.html playground.html evaluation.html   page shells
    OUT/assets/app.js style.css        the whole front end (no external library, no CDN); evaluation.js
                                       the evaluation page's own part (app.js's helpers, one more page)
    OUT/data/<name>.js                 data: ``SAEREC.data["<name>"] = {...}`` (see saerec.browse.data)
    OUT/img/*.png                      the stages' plots the evaluation page embeds (copied from RUN/)
    OUT/saerec-site.json               what wrote it (marks the folder as a site it may replace)

Data files are JavaScript, not JSON, because a page opened from file:// may load a ``<script>`` but
not ``fetch`` a file. A feature page loads only its own ``data/features/<id>.js``. The folder is
built beside OUT and renamed into place, so an interrupted export never leaves half a site.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from ..errors import UsageError

PAGES = {   # page -> (title, data files its shell loads up front)
    "index": ("Features", ["meta", "items", "index"]),
    "feature": ("Feature", ["meta", "items", "index"]),
    "attribute": ("Attributes", ["meta", "items", "index", "attributes"]),
    "user": ("Users", ["meta", "items", "index", "users"]),
    "playground": ("Playground", ["meta", "items", "index", "histories"]),
    "evaluation": ("SAE evaluation", ["meta", "items", "index", "evaluation"]),
}
SCRIPTS = {"evaluation": ["evaluation.js"]}     # page -> its own script beside app.js
ASSETS = ("app.js", "evaluation.js", "style.css")
MARKER = "saerec-site.json"


def shell(page: str) -> str:
    title, data = PAGES[page]
    scripts = "\n".join([f'<script src="data/{d}.js"></script>' for d in data] +
                        [f'<script src="assets/{js}"></script>' for js in ["app.js", *SCRIPTS.get(page, [])]])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{title} - saerec</title>\n<link rel="icon" href="data:,">\n'
            f'<link rel="stylesheet" href="assets/style.css">\n{scripts}\n'
            f'</head>\n<body data-page="{page}"></body></html>\n')


def data_js(name: str, obj) -> str:
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return f"(window.SAEREC=window.SAEREC||{{data:{{}}}}).data[{json.dumps(name)}]={body};\n"


def write_tree(root: Path, files: dict, images: dict | None = None) -> None:
    """The pages, the assets, ``files`` (name -> data) and ``images`` (name in the site -> file to
    copy) under ``root``."""
    (root / "assets").mkdir(parents=True)
    static = resources.files("saerec.browse") / "static"
    for name in ASSETS:
        (root / "assets" / name).write_text(static.joinpath(name).read_text())
    for name, src in (images or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / name)
    for page in PAGES:
        (root / f"{page}.html").write_text(shell(page))
    for name, obj in files.items():
        p = root / "data" / f"{name}.js"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data_js(name, obj))


def check_out(out: str | Path) -> Path:
    """``out`` may be written: missing, an empty folder, or a site written before (never another folder)."""
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UsageError(f"{out}: exists and is not an empty folder or a saerec site; choose another OUT")
    return out


def write_site(out: str | Path, files: dict, source: str, images: dict | None = None) -> dict:
    """Build the site beside ``out`` and move it into place; replaces an earlier site, never another folder.
    ``images``: PNGs to copy in (:func:`saerec.browse.evaluation.images`). Returns what was written:
    files and bytes."""
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_tree(tmp, files, images)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        count = sum(1 for p in tmp.rglob("*") if p.is_file()) + 1
        info = {"source": source, "files": count, "bytes": size, "features": files["meta"]["features"]}
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
