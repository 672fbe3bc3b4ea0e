"""The real `dvc` CLI on a small study in a temporary git repo.

The tests of this module form one story and run in order on one repo: the first
repro, a no-op repro, then changes that must rerun exactly the stages they affect.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from workspace import Workspace

pytestmark = pytest.mark.training

TRAIN = {f"train@mlp-{i}-{s}" for i in ("zeros", "he_normal") for s in (0, 1)}


@pytest.fixture(scope="module")
def study(small_study: tuple[Workspace, set[str]], tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Workspace, set[str]]:
    """The session's small study after its first `dvc repro`, committed, in a copy of this
    module's own; and the stages that first repro ran."""
    trained, ran = small_study
    project = trained.copy(tmp_path_factory.mktemp("study") / "repo")
    project.commit("small study")
    return project, ran


def test_first_repro_runs_every_stage_with_consistent_outputs(study) -> None:
    project, ran = study
    assert ran == {"check_params", "download", "prepare", "diagnose", "aggregate", "plots", "plots_init"} | TRAIN
    root = project.path
    summary = json.loads((root / "metrics/summary.json").read_text())["networks"]["mlp"]["initializers"]
    assert list(summary) == ["zeros", "he_normal"]
    assert json.loads((root / "metrics/summary.json").read_text())["networks"]["mlp"]["uniform_vs_normal"] == {}
    finals = [
        json.loads((root / f"runs/mlp-he_normal-{s}/metrics.json").read_text())["final_val_accuracy"]
        for s in (0, 1)
    ]
    assert summary["he_normal"]["final_val_accuracy"]["mean"] == pytest.approx(sum(finals) / 2)
    assert summary["he_normal"]["runs"] == 2 and summary["he_normal"]["rank"] == 1
    epochs = pd.read_csv(root / "metrics/epochs.csv")
    assert len(epochs) == 4 and set(epochs.initializer) == {"zeros", "he_normal"}
    assert "| he_normal" in (root / "metrics/results.md").read_text()
    drawn = sorted(png.name for png in (root / "plots/comparison").iterdir())
    assert drawn == ["convergence.png", "final_val_accuracy.png", "seeds.png"]
    assert sorted(png.name for png in (root / "plots/epochs").iterdir()) == ["val_accuracy.png", "val_loss.png"]
    # no depth plot for one depth, no probes without probes, no phase diagram, no uniform/normal pair
    for png in [*(root / "plots/comparison").iterdir(), *(root / "plots/epochs").iterdir(),
                root / "plots/init/init_layers.png",
                root / "plots/init/init_weights.png"]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    headline = json.loads((root / "metrics/headline/mlp.json").read_text())
    assert headline == {"zeros": summary["zeros"]["final_val_accuracy"]["mean"],
                        "he_normal": summary["he_normal"]["final_val_accuracy"]["mean"]}
    shown = project.run("dvc", "metrics", "show").stdout.splitlines()
    assert shown[0].split() == ["Path", "he_normal", "zeros"]  # the headline only
    assert shown[1].split()[0] == "metrics/headline/mlp.json"
    assert max(map(len, shown)) < 80


def test_a_rerun_reproduces_every_tracked_result_byte_for_byte(study) -> None:
    """A run's outputs hold only results, so retraining it gives them the same md5: nothing
    downstream reruns, and no file in git changes, dvc.lock included."""
    project, _ = study
    lock = (project.path / "dvc.lock").read_bytes()
    ran = project.repro("--force", "-s", "train@mlp-he_normal-0")
    assert ran == {"train@mlp-he_normal-0"}
    assert (project.path / "dvc.lock").read_bytes() == lock
    assert project.repro() == set()
    assert project.run("git", "status", "--porcelain", "metrics", "plots").stdout == ""


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
        "check_params", "diagnose", "train@mlp-glorot_uniform-0", "train@mlp-glorot_uniform-1", "aggregate", "plots",
        "plots_init",
    }
    summary = json.loads((project.path / "metrics/summary.json").read_text())
    assert "glorot_uniform" in summary["networks"]["mlp"]["initializers"]
    project.commit("add glorot_uniform")


def test_more_epochs_retrain_everything_and_metrics_diff_shows_it(study) -> None:
    project, _ = study
    project.set_params(train={"epochs": 2})
    ran = project.repro()
    assert {s for s in ran if s.startswith("train@")} == TRAIN | {
        "train@mlp-glorot_uniform-0", "train@mlp-glorot_uniform-1"
    }
    project.commit("two epochs")
    headline = json.loads(project.run("dvc", "metrics", "diff", "HEAD~1", "--json").stdout)
    assert list(headline) == ["metrics/headline/mlp.json"]
    he = headline["metrics/headline/mlp.json"]["he_normal"]
    assert he["old"] != he["new"] and he["diff"] == pytest.approx(he["new"] - he["old"])
    full = json.loads(project.run("dvc", "metrics", "diff", "HEAD~1", "--json",
                                  "--targets", "metrics/summary.json").stdout)
    assert full["metrics/summary.json"]["networks.mlp.initializers.he_normal.final_val_accuracy.mean"] == he


def drawn_lines(dom: str) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(initializer, revision) -> the (stroke colour, dash) of every line Vega drew for it."""
    lines: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for path in re.findall(r'<path aria-label="[^"]*" role="graphics-symbol" aria-roledescription="line mark"[^>]*>', dom):
        label = dict(part.split(": ", 1) for part in re.search(r'aria-label="([^"]*)"', path)[1].split("; "))
        dash = re.search(r'stroke-dasharray="([^"]*)"', path)
        lines.setdefault((label["initializer"], label["revision"]), set()).add(
            (re.search(r'stroke="([^"]*)"', path)[1], dash[1] if dash else "solid"))
    return lines


@pytest.mark.browser
def test_plots_show_renders_every_plot_offline_in_a_browser(study, render_page) -> None:
    project, _ = study
    project.run("dvc", "plots", "show", "-o", "report")
    page = project.path / "report/index.html"
    assert not re.search(r"<script[^>]+src=", page.read_text())  # Vega is inlined: nothing to fetch
    dom = render_page(page)
    assert len(re.findall(r'<svg[^>]*class="marks"', dom)) == 3  # val_accuracy, val_loss, accuracy
    assert dom.count("Symbol legend titled 'initializer'") == 3
    lines = drawn_lines(dom)
    initializers = ["zeros", "He normal", "Glorot uniform"]  # in words, as the PNGs name them
    assert {key for key in lines} == {(name, "workspace") for name in initializers}
    colours = {name: {stroke for stroke, _ in lines[(name, "workspace")]} for name in initializers}
    assert all(len(c) == 1 for c in colours.values())  # one colour per initializer in every plot
    assert len(set.union(*colours.values())) == 3  # and a different one for each
    assert dom.count("Symbol legend titled 'revision'") == 3  # one per plot
    for png in ("final_val_accuracy", "init_layers"):
        assert f"{png}.png" in dom
    assert "plots/epochs/" not in dom  # each curve once: interactive, not again as a PNG
    for png in ("studies_depth_depth", "studies_phase_phase", "studies_residual_spread"):
        assert f"{png}.png" in dom  # the committed studies' answers


@pytest.mark.browser
def test_the_report_says_so_when_its_interactive_plots_cannot_draw(study, layout_boxes) -> None:
    """With JavaScript off, the three Vega plots are blank: a notice says so, above them; with
    it on, the notice is not there."""
    project, _ = study
    project.run("dvc", "plots", "show", "-o", "report")
    page = project.path / "report/index.html"
    (_, _, width, height), = layout_boxes(page, "noscript .notice")
    assert width > 400 and height > 10
    assert "interactive plots (accuracy and loss per epoch) need JavaScript" in page.read_text()
    assert layout_boxes(page, "noscript .notice", scripts=True) == []
    assert len(layout_boxes(page, "svg.marks", scripts=True)) == 3  # the plots themselves draw


@pytest.mark.browser
def test_plots_diff_tells_revisions_apart_and_keeps_each_initializers_colour(study, render_page,
                                                                           layout_boxes) -> None:
    """Each revision its own dash, in one legend titled "revision" per plot (a shorter
    revision's points show where its line lies on the other's), each initializer its colour;
    the PNG pairs fit a 1400 px window."""
    project, _ = study
    project.run("dvc", "plots", "diff", "HEAD~1", "-o", "diff")
    dom = render_page(project.path / "diff/index.html")
    assert dom.count("Symbol legend titled 'revision' for strokeDash with 2 values: HEAD~1, workspace") == 3
    assert dom.count("Symbol legend titled 'revision'") == 3
    images = layout_boxes(project.path / "diff/index.html", "img")
    assert len(images) >= 4 and all(x + width <= 1400 for x, _, width, _ in images), images
    lines = drawn_lines(dom)
    for name in ("zeros", "He normal", "Glorot uniform"):
        (old_colour, old_dash), = {style for style in lines[(name, "HEAD~1")]}
        (new_colour, new_dash), = {style for style in lines[(name, "workspace")]}
        assert old_colour == new_colour and old_dash != new_dash


def test_a_new_network_trains_only_its_runs_and_its_own_keys_retrain_only_them(study) -> None:
    project, _ = study
    project.set_params(networks={"tiny": {"hidden_units": {"width": 16, "depth": 3}}},
                       study={"networks": ["mlp", "tiny"]})
    tiny = {f"train@tiny-{i}-{s}" for i in ("zeros", "he_normal", "glorot_uniform") for s in (0, 1)}
    assert project.repro() == {"check_params", "diagnose", "aggregate", "plots", "plots_init"} | tiny
    shown = project.run("dvc", "metrics", "show").stdout.splitlines()
    assert [line.split()[0] for line in shown[1:]] == ["metrics/headline/mlp.json", "metrics/headline/tiny.json"]
    results = (project.path / "metrics/results.md").read_text()
    assert "### Final val accuracy on every network" in results and "### tiny" in results
    networks = pd.read_csv(project.path / "metrics/networks.csv")
    assert networks.groupby("network").depth.first().to_dict() == {"mlp": 2, "tiny": 3}
    project.set_params(networks={"tiny": {"hidden_units": {"width": 16, "depth": 3}, "dropout": 0.1}})
    assert {s for s in project.repro() if s.startswith("train@")} == tiny
