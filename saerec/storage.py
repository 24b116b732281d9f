"""Run directories on a URI that ``pyarrow.fs`` understands (``s3://``, ``gs://``, ``hdfs://``,
``abfs://``, ``file://``), for clusters without a shared file system.

Why two homes for one run: the driver's stages read and write plain files (pandas, safetensors,
JSON), while Ray writes from every node of a cluster (Train checkpoints, Ray Data activation
shards). So a remote run has
- a local working copy on the driver's node, ``$SAEREC_CACHE_DIR/runs/<hash of the URI>``: pulled
  from the URI before a command (so a rerun resumes and skips finished stages) and pushed back
  after it; ``saerec run`` pushes after every stage, ``pipeline.json`` last, so the remote record
  never claims a stage whose files are not there;
- the URI itself for what Ray writes: ``RunDir.ray_path`` gives Ray Train its ``storage_path`` and
  Ray Data its output folder, and the driver pulls the activation shards it reads afterwards.
Folders named ``ray`` directly under a stage folder hold Ray Train's own storage: they live on the
URI only and are neither pulled nor deleted by a push.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from .errors import UsageError

log = logging.getLogger("saerec.storage")
_ATTACHED: dict[Path, "RemoteStore"] = {}
CHUNK = 8 << 20
SYNCED = ".saerec-synced.json"        # in the local copy: what the last pull/push copied


def _unchanged(last: dict | None, remote: tuple | None, local: tuple | None) -> bool:
    """Neither side of a file changed since the last copy (both exist and match the manifest)."""
    return (last is not None and remote is not None and local is not None
            and last.get("remote") == list(remote) and last.get("local") == list(local))


def is_uri(path) -> bool:
    return isinstance(path, str) and "://" in path


def _ray_storage(rel: str) -> bool:
    """``<stage>/ray/...``: Ray Train's checkpoints, written straight to the URI by the workers."""
    parts = rel.split("/")
    return len(parts) > 2 and parts[1] == "ray"


class RemoteStore:
    def __init__(self, uri: str, cache: str | Path | None = None):
        import pyarrow.fs as pafs

        self.uri = uri.rstrip("/")
        try:
            self.fs, self.base = pafs.FileSystem.from_uri(self.uri)
        except Exception as e:                   # unknown scheme, missing credentials or S3/GCS support
            raise UsageError(f"run directory {uri}: pyarrow.fs cannot open it ({e})") from None
        cache = Path(cache or os.environ.get("SAEREC_CACHE_DIR", Path.home() / ".cache" / "saerec"))
        self.local = (cache / "runs" / hashlib.sha256(self.uri.encode()).hexdigest()[:16]).resolve()

    def uri_of(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    def _remote_files(self, rel: str = "") -> dict[str, tuple]:
        """Run-relative path -> (size, mtime) of every remote file under ``rel`` (Ray storage aside)."""
        import pyarrow.fs as pafs

        root = f"{self.base}/{rel}".rstrip("/")
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            found = [info]
        elif info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
            found = [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]
        else:
            found = []
        files = {i.path[len(self.base) + 1:]: (i.size, i.mtime_ns) for i in found}
        return {k: v for k, v in files.items() if not _ray_storage(k)}

    def _local_files(self, rel: str = "") -> dict[str, tuple]:
        """Run-relative path -> (size, mtime) of every local file under ``rel`` (Ray storage aside)."""
        root = self.local / rel if rel else self.local
        found = [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()] if root.is_dir() else []
        files = {f.relative_to(self.local).as_posix(): (f.stat().st_size, f.stat().st_mtime_ns) for f in found}
        return {k: v for k, v in files.items() if not _ray_storage(k) and k != SYNCED}

    def _synced(self) -> dict[str, dict]:
        """What the last pull or push copied: per file, its remote and local (size, mtime) right after.
        A file is copied again only when one side has changed since, so a stage's outputs are not
        re-uploaded by every later push, and weights rewritten at the same size are still noticed."""
        path = self.local / SYNCED
        return json.loads(path.read_text()) if path.exists() else {}

    def _record(self, synced: dict, name: str) -> None:
        remote = self._remote_files(name).get(name)
        local = self._local_files(name).get(name)
        synced[name] = {"remote": list(remote) if remote else None, "local": list(local) if local else None}

    def _save(self, synced: dict) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / SYNCED).write_text(json.dumps(synced))

    def pull(self, rel: str = "") -> int:
        """Make the local copy of ``rel`` (default: everything) equal to the remote; returns files copied."""
        remote, local, synced = self._remote_files(rel), self._local_files(rel), self._synced()
        for name in set(local) - set(remote):
            (self.local / name).unlink()
            synced.pop(name, None)
        copied = 0
        for name, state in remote.items():
            if _unchanged(synced.get(name), state, local.get(name)):
                continue
            dst = self.local / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(f"{self.base}/{name}") as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            self._record(synced, name)
            copied += 1
        self._save(synced)
        return copied

    def push(self, rel: str = "") -> int:
        """Make the remote ``rel`` equal to the local copy (Ray Train storage aside); returns files copied."""
        local, remote, synced = self._local_files(rel), self._remote_files(rel), self._synced()
        for name in set(remote) - set(local):
            self.fs.delete_file(f"{self.base}/{name}")
            synced.pop(name, None)
        copied = 0
        for name in sorted(local):
            if _unchanged(synced.get(name), remote.get(name), local[name]):
                continue
            self.fs.create_dir(f"{self.base}/{name}".rsplit("/", 1)[0], recursive=True)
            with open(self.local / name, "rb") as src, self.fs.open_output_stream(f"{self.base}/{name}") as out:
                shutil.copyfileobj(src, out, CHUNK)
            self._record(synced, name)
            copied += 1
        self._save(synced)
        return copied

    def delete(self, rel: str) -> None:
        """Remove a remote folder (Ray's outputs, before a stage writes them again)."""
        import pyarrow.fs as pafs

        if self.fs.get_file_info(f"{self.base}/{rel}").type == pafs.FileType.Directory:
            self.fs.delete_dir(f"{self.base}/{rel}")


def attach(uri: str) -> Path:
    """Open a remote run for this process: pulled once, on first use; returns the local copy's path
    (which ``RunDir`` then recognises as remote)."""
    for store in _ATTACHED.values():
        if store.uri == uri.rstrip("/"):
            return store.local
    store = RemoteStore(uri)
    store.local.mkdir(parents=True, exist_ok=True)
    n = store.pull()
    log.info("run %s: local copy %s (%d files pulled)", uri, store.local, n)
    _ATTACHED[store.local] = store
    return store.local


def remote_for(root: Path) -> RemoteStore | None:
    return _ATTACHED.get(Path(root).resolve())


def detach_all() -> None:
    """Forget the remote runs opened so far: the next ``RunDir(uri)`` pulls again (one CLI command each)."""
    _ATTACHED.clear()


def push_all() -> None:
    """Push every remote run this process opened (the CLI calls it when a command succeeds)."""
    for store in _ATTACHED.values():
        n = store.push()
        log.info("run %s: %d files pushed", store.uri, n)


def clear_storage(storage: str | Path, experiment: str) -> None:
    """Delete one Ray Train experiment under ``storage`` (a local folder or a URI)."""
    if is_uri(str(storage)):
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(f"{str(storage).rstrip('/')}/{experiment}")
        if fs.get_file_info(base).type == pafs.FileType.Directory:
            fs.delete_dir(base)
    else:
        shutil.rmtree(Path(storage) / experiment, ignore_errors=True)
