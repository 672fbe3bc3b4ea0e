"""The child processes of `make study`, `make train` and `studies/run.py`, stopped in order.

Each child runs in a session of its own, so that a terminal's Ctrl-C reaches only the
command that started it. The command then stops its children (SIGINT to each child's
process group, as the terminal would have sent it, SIGKILL after a grace period),
silences their last words (a training stage's traceback is no news), removes what it made,
and says in one line what finished and that running it again resumes. The children's
output is relayed as it comes, with a line for each training run that finishes: run k of
N, the time so far and an estimated finish.
"""

from __future__ import annotations

import collections
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from contextlib import contextmanager
from typing import IO

from tqdm import tqdm

from initstudy.errors import StudyError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE = 15.0  # seconds a child has to end after SIGINT: a training stage ends within one
# DVC's lines (on stdout) that start and end a stage: a run starts, or is restored from the
# run-cache; then its lock entry is written
STARTED = re.compile(r"^(?:Running stage|Stage) '(train@[^']+)'(?::| is cached)")
FINISHED = "Updating lock file"
UP_TO_DATE = re.compile(r"^Stage '(train@[^']+)' didn't change")  # finished before (make train's share)


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP arrived (`signum`); `told` once what finished has been said."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.told = False


_state = {"shielded": 0, "pending": 0}
quiet = threading.Event()  # set once interrupted: the children's output is dropped from then on


def _interrupt(signum: int, frame: object) -> None:
    for other in SIGNALS:  # the cleanup that follows runs to its end
        signal.signal(other, signal.SIG_IGN)
    quiet.set()
    if _state["shielded"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def catch_signals() -> None:
    """Turn the first Ctrl-C, SIGTERM or SIGHUP into Interrupted, and ignore those after it."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


@contextmanager
def shielded() -> Iterator[None]:
    """Hold off Interrupted until the block has ended (a file written whole, or not at all)."""
    _state["shielded"] += 1
    try:
        yield
    finally:
        _state["shielded"] -= 1
        if not _state["shielded"] and _state["pending"]:
            raise Interrupted(_state["pending"])


def exit_status(signum: int) -> int:
    """The shell's exit status for a command ended by `signum`."""
    return 128 + signum


class Progress:
    """Counts the training runs of one command as they finish, and prints a line for each."""

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages
        self.finished: list[str] = []
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def done(self, stage: str, who: str = "") -> None:
        with self.lock:
            if stage not in self.stages or stage in self.finished:
                return
            self.finished.append(stage)
            count, total = len(self.finished), len(self.stages)
            elapsed = time.monotonic() - self.start
            left = elapsed / count * (total - count)
            end = datetime.datetime.now() + datetime.timedelta(seconds=left)
            print(f"run {count} of {total} finished: {stage}{who}; {tqdm.format_interval(elapsed)} elapsed, "
                  f"about {tqdm.format_interval(left)} left, done at about {end:%H:%M}", flush=True)


def interrupted(progress: Progress | None, command: str) -> str:
    """The one line said on an interruption: what finished, what did not, how to resume."""
    if progress is None:
        return f"interrupted before any run started: nothing was trained. Run `{command}` again to start."
    done, total = len(progress.finished), len(progress.stages)
    if done == total:
        return (f"interrupted: all {total} run(s) had finished, not the stages after training. "
                f"Run `{command}` again: it trains nothing and runs those.")
    return (f"interrupted: {done} of {total} run(s) finished and are kept in the DVC cache, {total - done} did not. "
            f"Run `{command}` again to resume: it restores what finished and trains the rest.")


class Child:
    """A command in a session of its own, its output relayed (or captured) line by line; its
    last lines on stderr are kept in `said`. `errors=False` drops its stderr."""

    def __init__(self, args: list[str], cwd: str | Path | None = None, env: dict[str, str] | None = None,
                 capture: bool = False, prefix: str = "", progress: Progress | None = None,
                 errors: bool = True) -> None:
        self.prefix, self.progress, self.errors = prefix, progress, errors
        self.captured: list[str] = []
        self.said: collections.deque[str] = collections.deque(maxlen=20)
        self.process = subprocess.Popen(args, cwd=cwd, env=env, text=True, start_new_session=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.relays = [threading.Thread(target=self._relay, args=(self.process.stdout, sys.stdout, capture),
                                        daemon=True),
                       threading.Thread(target=self._relay, args=(self.process.stderr, sys.stderr, False),
                                        daemon=True)]
        for relay in self.relays:
            relay.start()

    def _relay(self, stream: IO[str], to: IO[str], capture: bool) -> None:
        running = None
        for line in stream:
            if capture:
                self.captured.append(line)
                continue
            if to is sys.stderr:
                self.said.append(line)
                if not self.errors:
                    continue
            if not quiet.is_set():
                to.write(f"{self.prefix}{line}")
                to.flush()
            if self.progress and (done := UP_TO_DATE.match(line)):
                self.progress.done(done[1])
            elif self.progress and (started := STARTED.match(line)):
                running = started[1]
            elif self.progress and running and line.startswith(FINISHED):
                self.progress.done(running, f" ({self.prefix.strip(' []')})" if self.prefix else "")
                running = None

    def wait(self) -> int:
        """Wait for the command's end; stop it if interrupted meanwhile."""
        try:
            code = self.process.wait()
        except Interrupted:
            self.stop()
            raise
        for relay in self.relays:
            relay.join()
        return code

    def stop(self, grace: float = GRACE) -> None:
        """End the command and every process it started (see `stop_group`)."""
        stop_group(self.process, grace)
        for relay in self.relays:
            relay.join(grace)

    def output(self) -> str:
        return "".join(self.captured)


def stop_group(process: subprocess.Popen, grace: float = GRACE, leader: bool = False) -> None:
    """End `process`, started in a session of its own, and every process it started: SIGINT,
    as Ctrl-C sends it, then SIGKILL to what is left after `grace` seconds.

    Without `leader`, the signal goes to what `process` runs, not to `process` itself, which
    then ends on its own: DVC writes dvc.lock between stages, and Ctrl-C while it writes
    leaves half of the file; a stage interrupted, it stops and says nothing more.
    """
    group, signalled = process.pid, set()
    deadline = time.monotonic() + grace
    while process.poll() is None and time.monotonic() < deadline:
        for pid in [group] if leader else _members(group) - {group} - signalled:
            _signal(pid, signal.SIGINT)
            signalled.add(pid)
        try:
            process.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
    while _members(group) and time.monotonic() < deadline:  # what it ran, cleaning up
        time.sleep(0.1)
    for pid in _members(group):  # what is left
        _signal(pid, signal.SIGKILL)
    process.wait()


def _members(group: int) -> set[int]:
    """The processes of a process group."""
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def run(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, capture: bool = False,
        progress: Progress | None = None, check: bool = True) -> str:
    """Run a command as a Child; stop with a StudyError if it fails, or else (`check=False`) drop
    its stderr and return ""; return its stdout if `capture`."""
    child = Child(list(args), cwd=cwd, env=env, capture=capture, progress=progress, errors=check)
    code = child.wait()
    if code != 0 and check:
        shown = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(args[:4]))
        raise StudyError(f"`{shown}{' …' if len(args) > 4 else ''}` failed (exit status {code}); "
                         "see its output above")
    return child.output() if code == 0 else ""


def dvc(*args: str, **kwargs: object) -> str:
    """Run the dvc CLI of this environment as a Child (see `run`)."""
    return run(sys.executable, "-m", "dvc", *args, **kwargs)
