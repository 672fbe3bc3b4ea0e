"""The committed dvc.lock holds only what dvc.yaml defines; a study whose every run diverged
says so in its plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SMALL_IMAGES, small_data
from initstudy.plotting import all_diverged, diverged_figure
from workspace import ROOT, Workspace, command_env

PLOTS = ("epochs/val_accuracy", "epochs/val_loss", "comparison/final_val_accuracy", "comparison/seeds",
         "comparison/convergence")


def test_dvc_lock_holds_no_stage_that_dvc_yaml_does_not_define(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT,
                            env=command_env(tmp_path), capture_output=True, text=True, check=True).stdout.split()
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert sorted(set(locked) - set(listed)) == []


@pytest.mark.training
def test_a_study_whose_every_run_diverged_says_so_in_each_plot(tmp_path: Path, small_mnist: Path) -> None:
    repo = Workspace.create(tmp_path / "repo", mirror=str(small_mnist), **small_data(
        small_mnist, data=SMALL_IMAGES, study={"initializers": ["he_normal"], "seeds": [0]},
        analysis={"reference": "he_normal"}, train={"optimizer": "sgd", "learning_rate": 1e38, "epochs": 1}))
    repo.repro()
    runs = pd.read_csv(repo.path / "metrics" / "runs.csv")
    assert runs.diverged.all()
    figure = diverged_figure(runs)
    assert figure.get_suptitle().startswith("Every run of this study diverged (1 of 1)")
    assert [t.get_text() for t in figure.texts[1:]] == [  # after the title
        f"mlp · he_normal · seed 0: {runs.diverged_because[0]}"]
    for name in PLOTS:
        expected = tmp_path / "expected" / f"{name}.png"
        all_diverged(runs, expected, repo.params()["plots"]["dpi"])
        assert (repo.path / "plots" / f"{name}.png").read_bytes() == expected.read_bytes(), name
