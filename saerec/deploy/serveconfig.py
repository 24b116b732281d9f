"""Keep the RayService's ``serveConfigV2`` equal to ``serve/config.yaml``: one Serve config for
``serve deploy`` on any Ray cluster and for KubeRay. The RayService manifest embeds the file
verbatim (comments included) as a YAML block scalar; ``saerec k8s sync-serve`` rewrites that block,
and a test checks the two are equal."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import UsageError

KEY = re.compile(r"^(\s*)serveConfigV2:\s*\|\s*$")


def embedded(rayservice: str) -> str:
    """The serveConfigV2 string of a RayService manifest's text."""
    doc = yaml.safe_load(rayservice)
    return (doc or {}).get("spec", {}).get("serveConfigV2", "")


def embed(rayservice: str, serve_config: str) -> str:
    """``rayservice`` with its serveConfigV2 block replaced by ``serve_config`` verbatim."""
    lines = rayservice.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if KEY.match(line)), None)
    if start is None:
        raise UsageError("the RayService has no 'serveConfigV2: |' block to rewrite")
    indent = len(KEY.match(lines[start]).group(1)) + 2
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():     # blank lines after the block stay outside it
        end -= 1
    block = "".join(" " * indent + line if line.strip() else "\n" for line in serve_config.splitlines(keepends=True))
    out = "".join(lines[:start + 1]) + block + "".join(lines[end:])
    if embedded(out) != serve_config:
        raise UsageError("serve config cannot be embedded verbatim (trailing blank lines or tabs?)")
    return out


def sync(serve_path: Path, rayservice_path: Path, check: bool = False) -> bool:
    """Rewrite (or with ``check`` only compare) the RayService's Serve config; True if it was equal."""
    serve_text, rs_text = serve_path.read_text(), rayservice_path.read_text()
    if embedded(rs_text) == serve_text:
        return True
    if not check:
        rayservice_path.write_text(embed(rs_text, serve_text))
    return False
