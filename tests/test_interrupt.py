"""Ctrl-C (or SIGTERM) at any moment of `make study`, `make train` and `studies/run.py`: one
line on what finished, no traceback, no worktree, process or temporary file left, and
running the same command again resumes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import small_data
from initstudy.parallel import _alive
from workspace import ROOT, Workspace

pytestmark = pytest.mark.training

TINY = dict(data={"train_samples": 1000, "val_samples": 500}, study={"initializers": ["zeros"], "seeds": [0, 1, 2]},
            train={"epochs": 1}, analysis={"reference": "zeros"})
RUNS = [f"train@mlp-zeros-{seed}" for seed in (0, 1, 2)]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, small_mnist: Path) -> Workspace:
    """A committed study of three one-epoch runs, with a study of its own for studies/run.py."""
    workspace = Workspace.create(tmp_path_factory.mktemp("interrupt") / "origin", mirror=str(small_mnist),
                                 **small_data(small_mnist, **TINY))
    (workspace.path / "studies").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "studies" / "run.py", workspace.path / "studies" / "run.py")
    (workspace.path / "studies" / "tiny.yaml").write_text(yaml.safe_dump({"study": {"seeds": [3, 4, 5]}}))
    workspace.commit("tiny study")
    return workspace


@pytest.fixture(scope="module")
def prepared(origin: Workspace) -> Workspace:
    """A clone of `origin` whose download and prepare stages ran, their dvc.lock entries committed:
    where every moment after the data starts from (a copy of it: `Workspace.copy`). Read only."""
    workspace = origin.clone(origin.path.parent / "prepared")
    assert {"download", "prepare"} <= workspace.repro("prepare")
    workspace.commit("the data, prepared")
    return workspace


def make(*args: str) -> list[str]:
    """make with this environment, its setup taken as done."""
    venv = Path(sys.executable).parent.parent
    return ["make", "-s", f"VENV={venv}", "-o", f"{venv}/.installed", *args]


def terminal_job() -> None:
    """Ctrl-C reaches a terminal's foreground job even where the test runner ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Job:
    """A command run as a terminal's foreground job (a process group of its own), its output logged."""

    def __init__(self, workspace: Workspace, command: list[str], log: Path, **env: str) -> None:
        self.log, self.tmp = log, log.parent / f"{log.stem}-tmp"
        self.tmp.mkdir()
        with log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=workspace.path, env=dict(workspace.env, TMPDIR=str(self.tmp),
                                            **env), stdout=out, stderr=subprocess.STDOUT, text=True,
                                            start_new_session=True, preexec_fn=terminal_job)

    def until(self, pattern: str, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while not re.search(pattern, self.log.read_text(), re.MULTILINE):
            assert self.process.poll() is None and time.time() < deadline, self.log.read_text()
            time.sleep(0.05)

    def interrupt(self, signum: int = signal.SIGINT) -> str:
        """Send `signum` to the whole job, as Ctrl-C (or a scheduler's SIGTERM) does; return its output."""
        os.killpg(self.process.pid, signum)
        assert self.process.wait(timeout=120) != 0
        return self.log.read_text()

    def finish(self) -> str:
        assert self.process.wait(timeout=900) == 0, self.log.read_text()
        return self.log.read_text()


def processes_in(*folders: Path) -> list[str]:
    """The command lines of processes whose working directory is in one of `folders`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = (proc / "cwd").resolve()
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(cwd == folder or folder in cwd.parents for folder in folders):
            found.append(argv)
    return found


def assert_clean_stop(job: Job, workspace: Workspace, output: str, command: str) -> int:
    """One line on what finished, nothing else of the stop; nothing left behind. Returns the
    number of runs it says finished."""
    lines = [line for line in output.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, output
    for noise in ("Traceback", "KeyboardInterrupt", "Exception ignored", "make: ***", "ERROR"):
        assert noise not in output, output
    assert f"Run `{command}` again" in lines[0], lines[0]
    deadline = time.time() + 30
    while processes_in(workspace.path, job.tmp):
        assert time.time() < deadline, processes_in(workspace.path, job.tmp)
        time.sleep(0.1)
    assert workspace.run("git", "worktree", "list").stdout.count("\n") == 1
    assert not list(job.tmp.iterdir())
    folders = [workspace.path / folder for folder in ("runs", "metrics", "plots", "data")]
    assert not [path for folder in folders for path in folder.rglob(".*.tmp*")]
    match = re.search(r"(\d+) of (\d+) run\(s\) finished|all (\d+) run\(s\) had finished", lines[0])
    if match is None:
        assert "before any run started" in lines[0]
        return 0
    return int(match[1] or match[3])


def trained(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(train@[^']+)'", output))


def assert_resumed(output: str, finished: int) -> None:
    """A rerun trains what had not finished (a run that ended as the signal came is restored too)
    and restores the rest."""
    restored = set(re.findall(r"Stage '(train@[^']+)' (?:is cached - skipping run|didn't change)", output))
    if finished == len(RUNS):  # restored from the cache if the signal came before they were gathered
        assert not trained(output), output
        return
    assert len(trained(output)) <= len(RUNS) - finished and trained(output) | restored == set(RUNS), output


@pytest.mark.parametrize(("moment", "pattern", "signum"), [
    ("as the data is downloaded", r"^Running stage 'download'", signal.SIGINT),
    ("as the workers start", r"^worker 2/2", signal.SIGINT),
    ("mid-training", r"^run 1 of 3 finished", signal.SIGINT),
    ("mid-training, SIGTERM as a scheduler sends it", r"^run 1 of 3 finished", signal.SIGTERM),
    ("as the last run finishes", r"^run 3 of 3 finished", signal.SIGINT),
    ("in the stages after training", r"^Running stage 'diagnose'", signal.SIGINT),
])
def test_make_study_stops_cleanly_and_resumes(origin: Workspace, request: pytest.FixtureRequest, tmp_path: Path,
                                              moment: str, pattern: str, signum: int) -> None:
    """From a clone of the committed study (the download is the moment), or a copy of one whose data
    is prepared (any later moment: download and prepare are not done again for each)."""
    if "download" in pattern:
        workspace = origin.clone(tmp_path / "study")
    else:
        workspace = request.getfixturevalue("prepared").copy(tmp_path / "study")
    job = Job(workspace, make("study", "WORKERS=2"), tmp_path / "make.log")
    job.until(pattern)
    output = job.interrupt(signum)
    finished = assert_clean_stop(job, workspace, output, "make study WORKERS=2")
    assert_resumed(Job(workspace, make("study", "WORKERS=2"), tmp_path / "again.log").finish(), finished)
    assert workspace.repro() == set()


def test_make_train_stops_cleanly_and_resumes(prepared: Workspace, tmp_path: Path) -> None:
    workspace = prepared.copy(tmp_path / "shard")
    job = Job(workspace, make("train", "SHARD=1/1"), tmp_path / "make.log")
    job.until(r"^run 1 of 3 finished")
    finished = assert_clean_stop(job, workspace, job.interrupt(), "make train SHARD=1/1")
    assert finished >= 1
    assert_resumed(Job(workspace, make("train", "SHARD=1/1"), tmp_path / "again.log").finish(), finished)


def test_studies_run_stops_cleanly_and_resumes(prepared: Workspace, tmp_path: Path) -> None:
    workspace = prepared.copy(tmp_path / "studies")
    command = [sys.executable, "studies/run.py", "tiny"]
    job = Job(workspace, command, tmp_path / "run.log", INITSTUDY_WORKERS="2")
    job.until(r"^run 1 of 3 finished")
    finished = assert_clean_stop(job, workspace, job.interrupt(), "python studies/run.py tiny")
    assert finished >= 1 and not (workspace.path / "studies" / "tiny").exists()
    again = Job(workspace, command, tmp_path / "again.log", INITSTUDY_WORKERS="2").finish()
    assert len(trained(again)) <= len(RUNS) - finished, again
    assert (workspace.path / "studies" / "tiny" / "summary.json").is_file()


def test_worktrees_left_by_a_killed_make_study_are_removed_by_the_next(prepared: Workspace,
                                                                        tmp_path: Path) -> None:
    """SIGKILL leaves no time to clean up: the next `make study` removes the worktrees and
    stops the workers that ran on, then resumes."""
    workspace = prepared.copy(tmp_path / "killed")
    job = Job(workspace, make("study", "WORKERS=2"), tmp_path / "make.log")
    job.until(r"^\[\d/2\] Running stage 'train@")
    os.killpg(job.process.pid, signal.SIGKILL)  # make and the command; the workers run on in their sessions
    job.process.wait()
    assert workspace.run("git", "worktree", "list").stdout.count("\n") == 3
    again = Job(workspace, make("study", "WORKERS=2"), tmp_path / "again.log").finish()
    assert "removed the worktrees that an earlier run, killed, left in" in again
    assert workspace.run("git", "worktree", "list").stdout.count("\n") == 1
    assert not list(job.tmp.iterdir()) and not processes_in(job.tmp)
    assert workspace.repro() == set()


def test_a_killed_owner_not_yet_reaped_counts_as_gone() -> None:
    """Killed, a `make study` is a zombie until init reaps it: the next one must not take it
    for a run still going, or it would leave its worktrees."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert _alive(child.pid)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has ended, and is not reaped: a zombie
        assert not _alive(child.pid)
    finally:
        child.kill()
        child.wait()
