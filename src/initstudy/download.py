"""Fetch dataset files from an ordered list of sources: verified, bounded in bytes and time,
and written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from initstudy.atomic import usual_mode, write_atomically
from initstudy.datasets import DataError, DataFile
from initstudy.errors import FULL, StudyError, disk_full_message, megabytes

MIRROR_ENV = "INITSTUDY_DATA_MIRROR"
DEADLINE_ENV = "INITSTUDY_DOWNLOAD_DEADLINE"
TIMEOUT_SECONDS = 30  # the longest a source may stay silent
# The longest a source may take for one file: this, plus the file's bytes at MIN_RATE.
DEADLINE_BASE_SECONDS = 60
MIN_RATE = 32 * 1024  # bytes per second (256 kbit/s): about 90 minutes for the CIFAR-10 archive
ATTEMPTS_PER_SOURCE = 2
CHUNK = 1 << 20


def sources_with_mirror(sources: list[str]) -> list[str]:
    """The configured sources, preceded by the mirror named in INITSTUDY_DATA_MIRROR."""
    mirror = os.environ.get(MIRROR_ENV)
    return [mirror, *sources] if mirror else list(sources)


def deadline_seconds(file: DataFile) -> float:
    """How long one source may take to send `file`: INITSTUDY_DOWNLOAD_DEADLINE seconds if
    set, else DEADLINE_BASE_SECONDS plus its bytes at MIN_RATE."""
    value = os.environ.get(DEADLINE_ENV)
    if not value:
        return DEADLINE_BASE_SECONDS + file.max_bytes / MIN_RATE
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise DataError(f"{DEADLINE_ENV} = {value!r}: not a positive number of seconds")
    return seconds


def _open(source: str, name: str) -> BinaryIO:
    """A readable binary stream of `name` at `source` (a directory or URL)."""
    if "://" not in source:
        return open(Path(source) / name, "rb")
    url = urllib.parse.urljoin(source if source.endswith("/") else source + "/", name)
    return urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)


def _too_many_bytes(name: str, file: DataFile) -> str:
    if file.size is None:
        return (f"sent more than {file.max_bytes:,} bytes for {name}, the limit for a file "
                "whose checksum data.checksums sets (its size is unknown): cut off")
    return f"sent more than the {file.size:,} bytes of {name}: cut off"


def _receive(source: str, name: str, file: DataFile, seconds: float, out: Path) -> None:
    """Stream `name` from `source` into `out`, cutting the source off once it has sent more
    than the file's bytes or taken longer than `seconds`; refuse the file unless its
    checksum ("sha256:<hex>" or "md5:<hex>") matches."""
    algorithm, expected = file.checksum.split(":", 1)
    digest = hashlib.new(algorithm)
    received = 0
    deadline = time.monotonic() + seconds
    with open(out, "wb") as f, _open(source, name) as stream:
        # read1 returns what has arrived, so the checks below run however slowly bytes come
        while chunk := stream.read1(min(CHUNK, file.max_bytes + 1 - received)):
            received += len(chunk)
            if received > file.max_bytes:
                raise DataError(_too_many_bytes(name, file))
            if time.monotonic() > deadline:
                raise DataError(
                    f"took longer than {seconds:g} s for {name} ({received:,} bytes received): cut off. "
                    f"On a slow connection, allow more with {DEADLINE_ENV}=<seconds>"
                )
            digest.update(chunk)
            f.write(chunk)
    if digest.hexdigest() != expected:
        raise DataError(f"checksum mismatch: expected {algorithm} {expected}, got {digest.hexdigest()}")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException))


def fetch_file(name: str, file: DataFile, sources: list[str], dest_dir: Path) -> str:
    """Fetch one file from the first source that serves it intact; return that source.

    Each source that fails is named on stderr at once, and in the error if all fail.
    """
    seconds = deadline_seconds(file)
    failures = []
    for source in sources:
        for attempt in range(1, ATTEMPTS_PER_SOURCE + 1):
            try:
                write_atomically(dest_dir / name, lambda tmp: _receive(source, name, file, seconds, tmp))
                return source
            except (OSError, http.client.HTTPException, DataError) as exc:  # HTTPException: a cut or garbled response
                if isinstance(exc, OSError) and exc.errno in FULL:
                    raise  # the disk, not the source: no other source helps
                if attempt == ATTEMPTS_PER_SOURCE or not _retryable(exc):
                    print(f"{name}: {source} failed: {exc}", file=sys.stderr, flush=True)
                    failures.append(f"{source}: {exc}")
                    break
                time.sleep(attempt)
    raise DataError(
        f"could not fetch {name} from any source:\n  "
        + "\n  ".join(failures)
        + f"\nTo use a local mirror (a directory or URL holding the files), set {MIRROR_ENV}"
        " or put it first in data.sources.<dataset> in params.yaml."
    )


def fetch_dataset(files: dict[str, DataFile], sources: list[str], dest_dir: Path) -> None:
    """Fetch every file of a dataset into `dest_dir`, which holds only verified files, with the
    modes of files the user creates (the umask's).

    Files are staged in a hidden sibling folder and moved in at once, so an interrupted
    download never leaves a partial file in `dest_dir`; stale staging folders are removed.
    """
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest_dir.parent.glob(f".{dest_dir.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
    try:
        os.chmod(staging, usual_mode(directory=True))  # mkdtemp makes it private
        for name, file in files.items():
            source = fetch_file(name, file, sources, staging)
            print(f"{name}: ok ({file.checksum.split(':')[0]} verified) from {source}", flush=True)
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        os.replace(staging, dest_dir)
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        needs = f"{megabytes(sum(file.max_bytes for file in files.values()))} (the dataset's files)"
        raise StudyError(disk_full_message(exc, dest_dir, needs)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
