"""`make study` with its default workers where it was fragile: offline, in a path of any
letters, and the line it prints for each finished run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from test_interrupt import TINY, make, trained
from workspace import Workspace

pytestmark = pytest.mark.training

RUNS = {f"train@mlp-zeros-{seed}" for seed in (0, 1)}
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # every fetch refused


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Workspace:
    """A committed study of two one-epoch runs."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("make study's default is one worker per CPU: these tests need two CPUs")
    workspace = Workspace.create(tmp_path_factory.mktemp("workers") / "origin", mirror=str(mnist_dir),
                                 **dict(TINY, study={"initializers": ["zeros"], "seeds": [0, 1]}))
    workspace.commit("tiny study")
    return workspace


def test_offline_workers_use_the_checkouts_download(origin: Workspace, tmp_path: Path) -> None:
    """The data downloaded here once: offline, with no mirror, the workers train from it and
    never run the download stage again."""
    workspace = origin.clone(tmp_path / "offline")
    workspace.repro("prepare")  # from the mirror
    del workspace.env["INITSTUDY_DATA_MIRROR"]
    workspace.env.update(OFFLINE)
    result = workspace.run(*make("study"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker 2/2" in result.stdout
    assert "Running stage 'download'" not in result.stdout and "could not fetch" not in result.stderr
    assert trained(result.stdout) == RUNS
    assert workspace.repro() == set()


def test_make_study_with_default_workers_in_a_non_ascii_path(origin: Workspace, tmp_path: Path) -> None:
    workspace = origin.clone(tmp_path / "a b" / "ü p")
    result = workspace.run(*make("study"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker 2/2" in result.stdout and trained(result.stdout) == RUNS
    assert workspace.repro() == set()


def test_each_finished_run_gets_a_line_with_its_number_time_and_finish(origin: Workspace, tmp_path: Path) -> None:
    """One line per finished run, in a log that is not a terminal, with either count of workers."""
    for workers in ("1", "2"):
        workspace = origin.clone(tmp_path / f"progress-{workers}")
        result = workspace.run(*make("study", f"WORKERS={workers}"))
        lines = [line for line in result.stdout.splitlines() if line.startswith("run ")]
        assert len(lines) == 2, result.stdout
        worker = r" \([12]/2\)" if workers == "2" else ""
        for k, line in enumerate(lines, 1):
            assert re.fullmatch(rf"run {k} of 2 finished: train@mlp-zeros-[01]{worker}; \d\d:\d\d elapsed, "
                                r"about \d\d:\d\d left, done at about \d\d:\d\d", line), line
