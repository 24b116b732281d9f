"""Render a kustomization as ``kustomize build`` does, for the subset of kustomize that ``k8s/`` uses.

Why a renderer of our own: CI and ``saerec k8s validate`` must render the overlays on machines that
have no kustomize binary. The subset is small and explicit (``resources``, ``labels`` on metadata,
``images``, ``namespace`` and JSON 6902 ``patches``); anything else is refused with a message rather
than rendered differently. A test renders every overlay with the real kustomize too, where one is
installed, and requires the same objects.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from ..errors import UsageError

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "labels", "images", "namespace", "patches"}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def kustomization_file(folder: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"{folder}: no kustomization.yaml")


def render(folder: str | Path) -> list[dict]:
    """The objects ``kustomize build FOLDER`` would print (order aside)."""
    folder = Path(folder)
    kfile = kustomization_file(folder)
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = sorted(set(spec) - SUPPORTED_FIELDS)
    if unknown:
        raise UsageError(f"{kfile}: kustomize field(s) {', '.join(unknown)} are not supported by saerec's renderer "
                         f"(supported: {', '.join(sorted(SUPPORTED_FIELDS))}); render with kustomize instead")
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            docs += render(path)
        elif path.is_file():
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        else:
            raise UsageError(f"{kfile}: resource '{entry}' does not exist")
    for i, patch in enumerate(spec.get("patches", [])):
        _apply_patch(docs, patch, folder, f"{kfile}: patches[{i}]")
    for i, group in enumerate(spec.get("labels", [])):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise UsageError(f"{kfile}: labels[{i}]: includeSelectors/includeTemplates are not supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(group.get("pairs", {}))
    for image in spec.get("images", []):
        for doc in docs:
            _set_images(doc, image)
    if spec.get("namespace"):
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return docs


def _apply_patch(docs: list[dict], patch: dict, folder: Path, where: str) -> None:
    if "path" in patch:
        text = (folder / patch["path"]).read_text()
    elif "patch" in patch:
        text = patch["patch"]
    else:
        raise UsageError(f"{where}: needs 'path' or 'patch'")
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise UsageError(f"{where}: only JSON 6902 patches (a list of operations) are supported, "
                         f"not strategic-merge patches")
    target = patch.get("target") or {}
    extra = sorted(set(target) - {"kind", "name"})
    if extra:
        raise UsageError(f"{where}: target field(s) {', '.join(extra)} are not supported (kind, name)")
    hits = [d for d in docs
            if all(re.fullmatch(target[k], str(d.get("kind") if k == "kind" else d.get("metadata", {}).get("name")))
                   for k in ("kind", "name") if k in target)]
    if not hits:
        raise UsageError(f"{where}: target {target} matches no resource")
    for doc in hits:
        for j, op in enumerate(ops):
            try:
                json_patch(doc, op)
            except (KeyError, IndexError, ValueError) as e:
                raise UsageError(f"{where}: operation {j} ({op.get('op')} {op.get('path')}): {e}") from None


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError("a JSON pointer starts with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _child(node, key: str):
    return node[int(key)] if isinstance(node, list) else node[key]


def json_patch(doc: dict, op: dict) -> None:
    """One RFC 6902 operation (add, replace, remove, test) on ``doc`` in place."""
    *parents, last = _pointer(op["path"])
    node = doc
    for key in parents:
        node = _child(node, key)
    kind = op["op"]
    if kind == "test":
        if _child(node, last) != op["value"]:
            raise ValueError("test failed")
    elif kind == "remove":
        del node[int(last) if isinstance(node, list) else last]
    elif kind == "replace":
        _child(node, last)                      # must exist
        node[int(last) if isinstance(node, list) else last] = copy.deepcopy(op["value"])
    elif kind == "add":
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value
    else:
        raise ValueError(f"unsupported op '{kind}' (add, replace, remove, test)")


def _set_images(node, image: dict) -> None:
    """kustomize's image transformer: every ``containers``/``initContainers`` entry at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for c in value:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        c["image"] = _retag(c["image"], image)
            _set_images(value, image)
    elif isinstance(node, list):
        for value in node:
            _set_images(value, image)


def _retag(ref: str, image: dict) -> str:
    name, sep, rest = re.match(r"^([^:@]+(?::\d+/[^:@]+)?)([:@]?)(.*)$", ref).groups()
    if name != image["name"]:
        return ref
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return f"{name}{sep}{rest}"


def to_yaml(docs: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
