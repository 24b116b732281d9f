"""Find a dataset folder: an explicit path, ``SAEREC_DATA_DIR/<name>``, the cache, or a GroupLens download.

A local folder always wins. Downloads go to ``SAEREC_CACHE_DIR`` (default ``~/.cache/saerec``),
are checked against the md5 GroupLens publishes, and are unpacked once. Without network the
error says exactly what to download and where to put it.

The MovieLens data may not be redistributed (see the GroupLens terms); saerec never ships it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFound, DataError
from ..progress import Progress

log = logging.getLogger("saerec.data")

GROUPLENS_BASE = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Remote:
    zip_name: str
    md5: str | None      # None: GroupLens updates "latest" archives in place, so no fixed checksum
    folder: str          # folder inside the zip


GROUPLENS = {
    "ml-100k": Remote("ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", "ml-100k"),
    "ml-1m": Remote("ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
    "ml-20m": Remote("ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m"),
    "ml-latest-small": Remote("ml-latest-small.zip", None, "ml-latest-small"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("SAEREC_CACHE_DIR", Path.home() / ".cache" / "saerec"))


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _instructions(name: str, looked: list[Path]) -> str:
    where = ", ".join(str(p) for p in looked)
    if name in GROUPLENS:
        r = GROUPLENS[name]
        url = os.environ.get("SAEREC_GROUPLENS_URL", GROUPLENS_BASE) + r.zip_name
        md5 = f" (md5 {r.md5})" if r.md5 else ""
        return (f"dataset '{name}' not found (looked in {where}) and could not be downloaded: "
                f"download {url}{md5}, unzip it so that {cache_dir() / name} holds its files "
                f"(or any folder, then pass --data-dir or set SAEREC_DATA_DIR)")
    known = ", ".join(sorted(GROUPLENS))
    return (f"dataset '{name}' not found (looked in {where}); pass --data-dir FOLDER, put it under "
            f"SAEREC_DATA_DIR, or use a downloadable name ({known}) or 'synthetic'")


def download(name: str, dest_root: Path | None = None) -> Path:
    """Download and unpack a GroupLens dataset into the cache; return its folder."""
    remote = GROUPLENS[name]
    dest_root = dest_root or cache_dir()
    dest_root.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("SAEREC_GROUPLENS_URL", GROUPLENS_BASE) + remote.zip_name
    log.info("downloading %s", url)
    with tempfile.TemporaryDirectory(dir=dest_root) as tmp:
        zpath = Path(tmp) / remote.zip_name
        with urllib.request.urlopen(url, timeout=30) as resp, open(zpath, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            prog = Progress(f"download {remote.zip_name}", total, unit="B", every_s=5)
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                prog.update(len(chunk))
        got = md5sum(zpath)
        if remote.md5 and got != remote.md5:
            raise DataError(f"{url}: md5 mismatch (expected {remote.md5}, got {got}); the download is corrupt "
                            f"or the archive changed: nothing was unpacked")
        with zipfile.ZipFile(zpath) as zf:
            for member in zf.namelist():   # refuse paths that would escape the cache
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DataError(f"{url}: unsafe path in archive: {member}")
            zf.extractall(tmp)
        src = Path(tmp) / remote.folder
        if not src.is_dir():
            raise DataError(f"{url}: archive has no folder {remote.folder}/")
        final = dest_root / name
        if final.exists():
            shutil.rmtree(final)
        shutil.move(str(src), final)
        (final / ".saerec-md5").write_text(got + "\n")
    return final


def resolve(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding ``dataset``; ``data_dir`` (explicit) wins over everything."""
    if data_dir:
        p = Path(data_dir).expanduser()
        if not p.is_dir():
            raise DatasetNotFound(f"--data-dir {p}: no such directory")
        return p
    looked: list[Path] = []
    env = os.environ.get("SAEREC_DATA_DIR")
    if env:
        looked.append(Path(env) / dataset)
    looked.append(cache_dir() / dataset)
    for p in looked:
        if p.is_dir():
            return p
    if dataset in GROUPLENS and os.environ.get("SAEREC_OFFLINE", "") not in ("1", "true", "yes"):
        try:
            return download(dataset)
        except DataError:
            raise
        except OSError as e:   # URLError, timeouts, refused connections
            raise DatasetNotFound(_instructions(dataset, looked) + f" [{e}]") from None
    raise DatasetNotFound(_instructions(dataset, looked))
