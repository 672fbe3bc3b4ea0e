"""The real `dvc` CLI on a small study in a temporary git repo.

The tests of this module form one story and run in order on one repo: the first
repro, a no-op repro, then changes that must rerun exactly the stages they affect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import SMALL_STUDY
from initstudy.workspace import Workspace

TRAIN = {f"train@{i}-{s}" for i in ("zeros", "he_normal") for s in (0, 1)}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> tuple[Workspace, set[str]]:
    repo = tmp_path_factory.mktemp("study") / "repo"
    project = Workspace.create(repo, mirror=str(mnist_dir), **SMALL_STUDY)
    ran = project.repro()
    project.commit("small study")
    return project, ran


def test_first_repro_runs_every_stage_with_consistent_outputs(study) -> None:
    project, ran = study
    assert ran == {"check_params", "download", "diagnose", "aggregate", "plots", "plots_init"} | TRAIN
    root = project.path
    summary = json.loads((root / "metrics/summary.json").read_text())["initializers"]
    assert list(summary) == ["zeros", "he_normal"]
    assert json.loads((root / "metrics/summary.json").read_text())["uniform_vs_normal"] == {}
    finals = [
        json.loads((root / f"runs/he_normal-{s}/metrics.json").read_text())["final_val_accuracy"]
        for s in (0, 1)
    ]
    assert summary["he_normal"]["final_val_accuracy"]["mean"] == pytest.approx(sum(finals) / 2)
    assert summary["he_normal"]["runs"] == 2 and summary["he_normal"]["rank"] == 1
    epochs = pd.read_csv(root / "metrics/epochs.csv")
    assert len(epochs) == 4 and set(epochs.initializer) == {"zeros", "he_normal"}
    assert "| he_normal" in (root / "metrics/results.md").read_text()
    for png in ("val_accuracy", "val_loss", "final_val_accuracy", "seeds", "uniform_vs_normal",
                "convergence", "init_layers", "init_weights"):
        assert (root / f"plots/{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = json.loads(project.run("dvc", "metrics", "show", "--json").stdout)
    assert "he_normal" in json.dumps(shown)


def test_second_repro_runs_nothing(study) -> None:
    project, _ = study
    result = project.run("dvc", "repro")
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout


def test_a_plot_param_reruns_only_plots(study) -> None:
    project, _ = study
    project.set_params(plots={"dpi": 50})
    assert project.repro() == {"check_params", "plots", "plots_init"}


def test_a_new_initializer_trains_only_its_runs(study) -> None:
    project, _ = study
    project.set_params(study={"initializers": ["zeros", "he_normal", "glorot_uniform"]})
    assert project.repro() == {
        "check_params", "diagnose", "train@glorot_uniform-0", "train@glorot_uniform-1", "aggregate", "plots",
        "plots_init",
    }
    summary = json.loads((project.path / "metrics/summary.json").read_text())
    assert "glorot_uniform" in summary["initializers"]
    project.commit("add glorot_uniform")


def test_more_epochs_retrain_everything_and_metrics_diff_shows_it(study) -> None:
    project, _ = study
    project.set_params(train={"epochs": 2})
    ran = project.repro()
    assert {s for s in ran if s.startswith("train@")} == TRAIN | {
        "train@glorot_uniform-0", "train@glorot_uniform-1"
    }
    project.commit("two epochs")
    diff = json.loads(project.run("dvc", "metrics", "diff", "HEAD~1", "--json").stdout)
    changes = diff["metrics/summary.json"]
    he = changes["initializers.he_normal.final_val_accuracy.mean"]
    assert he["old"] != he["new"] and he["diff"] == pytest.approx(he["new"] - he["old"])


def test_plots_show_and_diff_render_html(study) -> None:
    project, _ = study
    project.run("dvc", "plots", "show", "-o", "report")
    html = (project.path / "report/index.html").read_text()
    assert "initializer" in html and "errorband" in html and "final_val_accuracy.png" in html
    project.run("dvc", "plots", "diff", "HEAD~1", "-o", "diff")
    html = (project.path / "diff/index.html").read_text()
    assert "HEAD~1" in html and "workspace" in html
