"""Errors a user can fix, and how a stage reports them."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import wraps


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


def stage_main(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main(): a StudyError becomes one clear message and exit status 2.

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

    return run
