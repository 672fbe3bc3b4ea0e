"""Write files all at once, so a reader never sees half of one, and with the usual modes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def usual_mode(directory: bool = False) -> int:
    """The mode open() (or mkdir(), for a directory) gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Have `write` write a temporary file in `path`'s folder, then rename it to `path`.

    The temporary file ends in `path`'s suffix, for writers that choose the format by it
    (matplotlib, Keras). Whenever the process dies, `path` is the old file or the new one,
    never half of one; a temporary file that a hard kill left behind is removed by the next
    write of the same path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp{path.suffix}"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, usual_mode())  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON (NaN and infinity are refused) atomically."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_folder(path: Path, fill: Callable[[Path], object]) -> None:
    """Have `fill` write a new folder's files, then put the folder in `path`'s place: a reader
    sees the old folder or the new one, whole, and no file of the old one stays in the new.
    Leftovers of a hard kill are removed by the next write of the same path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    new = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = new.with_name(new.name.replace(".tmp", ".old.tmp"))
    try:
        fill(new)
        os.chmod(new, usual_mode(directory=True))  # mkdtemp makes it private
        if path.exists():
            os.replace(path, old)
        os.replace(new, path)
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
