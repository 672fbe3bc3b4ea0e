"""Errors a user can fix, and how a stage reports them."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT)


class StudyError(Exception):
    """A problem with the user's params or data, reported without a traceback."""


def _exit_on_signal(signum: int, frame: object) -> None:
    """Turn SIGTERM or SIGINT into an exception, so that temporary files are cleaned up.

    Python drops an exception raised while it runs a garbage-collection callback (JAX has
    one), and the stage would run on; so the signal is sent again, to its default effect,
    if the process has not ended half a second later.
    """
    signal.signal(signum, signal.SIG_DFL)
    again = threading.Timer(0.5, os.kill, (os.getpid(), signum))
    again.daemon = True
    again.start()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(128 + signum)


def _size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _whole(path: Path) -> bool:
    """Whether an output is whole: a run's folder (under runs/) once it holds metrics.json,
    which the train stage writes last; what a failed write left of one says nothing."""
    return path.parent.name != "runs" or (path / "metrics.json").is_file()


def space_needed(out: Path) -> str:
    """About how much room writing `out` takes: the largest whole output like it beside it (a
    run of the same network: `runs/<network>-…`), else its own size the last time (a stage
    run by hand over its earlier output), else unknown."""
    kind = out.name.split("-")[0]
    like = [p for p in out.parent.iterdir() if p != out and p.name.split("-")[0] == kind and
            not p.name.startswith(".") and _whole(p)] if out.parent.is_dir() else []
    largest = max(map(_size, like), default=0)
    if largest:
        return f"about {megabytes(largest)} (the largest output like it beside it)"
    if _whole(out) and _size(out):
        return f"about {megabytes(_size(out))} (its size the last time)"
    return "an unknown amount (no whole output like it beside it to go by)"


def disk_full_message(exc: OSError, out: Path | None, needs: str | None = None) -> str:
    """What a stage says when the disk it writes to fills up: the folder, the room it needs
    (`needs`, or estimated from `out`), and that nothing was lost."""
    folder = Path(exc.filename).parent if exc.filename else out or Path.cwd()
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    needs = needs or (space_needed(out) if out else "an unknown amount")
    return (f"no space left on the device of {folder} ({megabytes(free)} free); writing "
            f"{out or 'this step'} needs {needs}. Nothing was lost: outputs are written whole or not at all, "
            "so the earlier results and dvc.lock are as they were, and the temporary files are removed. "
            "Free some space, then run `dvc repro` again.")


def _out_argument() -> Path | None:
    """The stage's --out argument (every stage names its output so)."""
    arguments = sys.argv[1:]
    for i, argument in enumerate(arguments):
        if argument == "--out" and i + 1 < len(arguments):
            return Path(arguments[i + 1])
        if argument.startswith("--out="):
            return Path(argument.removeprefix("--out="))
    return None


def stage_main(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main(): a StudyError, or a full disk, becomes one clear message and
    exit status 2.

    SIGTERM is turned into a normal exit and Ctrl-C into KeyboardInterrupt, so temporary
    files are cleaned up; a signal the exception could not stop ends the process.
    """

    @wraps(main)
    def run() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit_on_signal)
        try:
            main()
        except StudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except OSError as exc:
            if exc.errno not in FULL:
                raise
            print(f"error: {disk_full_message(exc, _out_argument())}", file=sys.stderr)
            sys.exit(2)

    return run
