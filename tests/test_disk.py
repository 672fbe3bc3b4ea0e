"""A full disk under the first run of a network: the message's estimate of the room a run
needs never comes from what the failed write itself left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_stage, write_params
from test_failures import fill, small_disk  # noqa: F401 (fixture)

pytestmark = pytest.mark.training


def test_the_first_run_of_a_network_on_a_full_disk_gives_no_false_estimate(tmp_path: Path, mnist_prepared: Path,
                                                                           small_disk) -> None:  # noqa: F811
    folder = write_params(tmp_path / "work", data={"train_samples": 500, "val_samples": 100}, train={"epochs": 1})
    runs = small_disk(folder / "runs", megabytes=2)
    fill(runs, leave=200_000)  # room for a history, not for the model
    result = run_stage(folder, "train", "--network", "mlp", "--initializer", "zeros", "--seed", "0",
                       "--data", str(mnist_prepared), "--out", "runs/mlp-zeros-0", "--log", "log.json")
    assert result.returncode == 2 and "no space left on the device" in result.stderr, result.stderr
    estimate = re.search(r"needs (about [\d.]+ MB|an unknown amount)", result.stderr)
    assert estimate, result.stderr
    assert estimate[1] == "an unknown amount", result.stderr  # no run of mlp beside it to go by
