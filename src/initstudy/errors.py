"""Errors a user can fix, and how a stage reports them."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from functools import wraps


class StudyError(Exception):
    """A problem with the user's params or data, reported without a traceback."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def stage_main(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage's main(): a StudyError becomes one clear message and exit status 2.

    SIGTERM is turned into a normal exit, so temporary files are cleaned up as on Ctrl-C.
    """

    @wraps(main)
    def run() -> None:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            main()
        except StudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return run
