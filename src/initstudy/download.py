"""Fetch dataset files from an ordered list of sources, verified and written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from initstudy.datasets import DataError

MIRROR_ENV = "INITSTUDY_DATA_MIRROR"
TIMEOUT_SECONDS = 30
ATTEMPTS_PER_SOURCE = 2
CHUNK = 1 << 20


def sources_with_mirror(sources: list[str]) -> list[str]:
    """The configured sources, preceded by the mirror named in INITSTUDY_DATA_MIRROR."""
    mirror = os.environ.get(MIRROR_ENV)
    return [mirror, *sources] if mirror else list(sources)


def _open(source: str, name: str) -> BinaryIO:
    """A readable binary stream of `name` at `source` (a directory or URL)."""
    if "://" not in source:
        return open(Path(source) / name, "rb")
    url = urllib.parse.urljoin(source if source.endswith("/") else source + "/", name)
    return urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)


def _copy_verified(source: str, name: str, checksum: str, dest: Path) -> None:
    """Stream one file into `dest` through a temporary file; keep it only if its checksum
    ("sha256:<hex>" or "md5:<hex>") matches."""
    algorithm, expected = checksum.split(":", 1)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, _open(source, name) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise DataError(
                f"checksum mismatch: expected {algorithm} {expected}, got {digest.hexdigest()}"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException))


def fetch_file(name: str, checksum: str, sources: list[str], dest_dir: Path) -> str:
    """Fetch one file from the first source that serves it intact; return that source."""
    failures = []
    for source in sources:
        for attempt in range(1, ATTEMPTS_PER_SOURCE + 1):
            try:
                _copy_verified(source, name, checksum, dest_dir / name)
                return source
            except (OSError, http.client.HTTPException, DataError) as exc:  # HTTPException: a cut or garbled response
                if attempt == ATTEMPTS_PER_SOURCE or not _retryable(exc):
                    failures.append(f"{source}: {exc}")
                    break
                time.sleep(attempt)
    raise DataError(
        f"could not fetch {name} from any source:\n  "
        + "\n  ".join(failures)
        + f"\nTo use a local mirror (a directory or URL holding the files), set {MIRROR_ENV}"
        " or put it first in data.sources.<dataset> in params.yaml."
    )


def fetch_dataset(files: dict[str, str], sources: list[str], dest_dir: Path) -> None:
    """Fetch every file (name → checksum) of a dataset into `dest_dir`, which holds only verified files.

    Files are staged in a hidden sibling folder and moved in at once, so an interrupted
    download never leaves a partial file in `dest_dir`; stale staging folders are removed.
    """
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest_dir.parent.glob(f".{dest_dir.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
    try:
        for name, checksum in files.items():
            source = fetch_file(name, checksum, sources, staging)
            print(f"{name}: ok ({checksum.split(':')[0]} verified) from {source}", flush=True)
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        os.replace(staging, dest_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
