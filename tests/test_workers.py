"""`make study` with its default workers where it was fragile: offline, in a path of any
letters, and the line it prints for each finished run (with one worker and with two)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import small_data
from test_interrupt import TINY, make, trained
from workspace import Workspace

pytestmark = pytest.mark.training

RUNS = {f"train@mlp-zeros-{seed}" for seed in (0, 1)}
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # every fetch refused


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, small_mnist: Path) -> Workspace:
    """A committed study of two one-epoch runs."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("make study's default is one worker per CPU: these tests need two CPUs")
    workspace = Workspace.create(tmp_path_factory.mktemp("workers") / "origin", mirror=str(small_mnist),
                                 **small_data(small_mnist, **dict(TINY, study={"initializers": ["zeros"], "seeds": [0, 1]})))
    workspace.commit("tiny study")
    return workspace


def assert_a_progress_line_per_run(stdout: str, workers: int) -> None:
    """One line per finished run, numbered in the order they finished, with the time elapsed, an
    estimate of the time left and of the finish; with more than one worker, the worker's number."""
    lines = [line for line in stdout.splitlines() if line.startswith("run ")]
    assert len(lines) == 2, stdout
    worker = rf" \([1-{workers}]/{workers}\)" if workers > 1 else ""
    for k, line in enumerate(lines, 1):
        assert re.fullmatch(rf"run {k} of 2 finished: train@mlp-zeros-[01]{worker}; \d\d:\d\d elapsed, "
                            r"about \d\d:\d\d left, done at about \d\d:\d\d", line), line


def test_offline_default_workers_in_a_non_ascii_path_use_the_checkouts_download(origin: Workspace,
                                                                                 tmp_path: Path) -> None:
    """Two workers (one per CPU) in a checkout at `a b/ü p`, offline with no mirror once the
    data is downloaded there: they train both runs from it, never run the download stage
    again, leave nothing to reproduce, and a progress line is printed for each finished run
    (in a log that is not a terminal)."""
    workspace = origin.clone(tmp_path / "a b" / "ü p")
    workspace.repro("prepare")  # from the mirror
    del workspace.env["INITSTUDY_DATA_MIRROR"]
    workspace.env.update(OFFLINE)
    result = workspace.run(*make("study"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "worker 2/2" in result.stdout and trained(result.stdout) == RUNS
    assert "Running stage 'download'" not in result.stdout and "could not fetch" not in result.stderr
    assert_a_progress_line_per_run(result.stdout, workers=2)
    assert workspace.repro() == set()


def test_each_finished_run_gets_a_line_with_its_number_time_and_finish(origin: Workspace, tmp_path: Path) -> None:
    """One line per finished run, in a log that is not a terminal, with one worker (with two:
    test_offline_default_workers_in_a_non_ascii_path_use_the_checkouts_download)."""
    workspace = origin.clone(tmp_path / "progress-1")
    result = workspace.run(*make("study", "WORKERS=1"))
    assert_a_progress_line_per_run(result.stdout, workers=1)
