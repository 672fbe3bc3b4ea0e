"""Every kind of figure, drawn from a committed study's files by the plots stages' own code:
no text leaves the figure, and no two texts overlap (matplotlib gives the extent of each one
it draws)."""

from __future__ import annotations

import importlib.util
import runpy
import sys
import tempfile
from functools import cache
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.text import Text

import initstudy.plotting as plotting
from initstudy.params import load_params

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_study", ROOT / "studies" / "run.py")
run_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_study)

DPI = 50  # the extents scale with the resolution; what overlaps does not
SLACK = 1.0  # pixels: extents that merely touch are not a collision


def drawn_texts(fig: plt.Figure) -> list[tuple[str, object]]:
    """(text, extent in pixels) of every non-empty text the figure draws."""
    texts: list[tuple[str, object]] = []
    draw = Text.draw

    def recorded(self: Text, renderer) -> None:
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip() and self.get_alpha() != 0:
            texts.append((self.get_text(), self.get_window_extent(renderer)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Text, "draw", recorded)
        fig.canvas.draw()
    return texts


def problems(fig: plt.Figure) -> list[str]:
    """The texts of a figure that leave it or overlap another."""
    texts = drawn_texts(fig)
    box = fig.bbox
    found = [f"{text!r} leaves the figure ({extent.x0:.0f}, {extent.y0:.0f}, {extent.x1:.0f}, {extent.y1:.0f} "
             f"in {box.width:.0f} × {box.height:.0f})"
             for text, extent in texts
             if extent.x0 < box.x0 - SLACK or extent.y0 < box.y0 - SLACK
             or extent.x1 > box.x1 + SLACK or extent.y1 > box.y1 + SLACK]
    for (a, one), (b, other) in combinations(texts, 2):
        width = min(one.x1, other.x1) - max(one.x0, other.x0)
        height = min(one.y1, other.y1) - max(one.y0, other.y0)
        if width > SLACK and height > SLACK:
            found.append(f"{a!r} overlaps {b!r}")
    return found


# Every committed study: among them one network and its histograms (default), uniform vs
# normal (activations), depth with epochs and a phase diagram whose initializers share a σ_w²
# (depth), a phase diagram of one panel (depth-adam), the phase diagram (phase), several
# networks, probes and the spread (residual).
STUDIES = {"default": ROOT / "metrics", **{name: ROOT / "studies" / name for name in
                                          ("activations", "depth", "depth-adam", "phase", "pytorch-default",
                                           "residual")}}


def study_params(name: str, folder: Path) -> Path:
    """The study's params at a low resolution."""
    params = run_study.study_params(name) if name != "default" else yaml.safe_load((ROOT / "params.yaml").read_text())
    params["plots"]["dpi"] = DPI
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    load_params(path)
    return path


@cache
def rendered(name: str) -> dict[str, tuple[plt.Figure, list[str]]]:
    """Run both plots stages' scripts on a committed study in this process; for each PNG they
    would write, its figure, drawn, and its problems. Once per study for every test here."""
    found: dict[str, tuple[plt.Figure, list[str]]] = {}

    def checked(fig: plt.Figure, path: Path, dpi: int) -> None:
        fig.set_dpi(dpi)
        found[path.name] = (fig, problems(fig))

    metrics = STUDIES[name]
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        common = ["--metrics", str(metrics), "--params", str(study_params(name, Path(tmp))), "--out", tmp]
        patch.setattr(plotting, "_save", checked)
        patch.setitem(plt.rcParams, "figure.max_open_warning", 0)  # kept open for the tests below
        for stage, extra in (("plots.py", []), ("plots_init.py", [] if (metrics / "init_histograms.csv").exists()
                                                else ["--layers-only"])):
            patch.setattr(sys, "argv", [stage, *common, *extra])
            runpy.run_path(str(ROOT / "src/stages" / stage), run_name="__main__")
    return found


@pytest.mark.parametrize("name", STUDIES)
def test_no_text_of_a_figure_leaves_it_or_overlaps_another(name: str) -> None:
    found = {png: issues for png, (_, issues) in rendered(name).items()}
    assert {png: issues for png, issues in found.items() if issues} == {}
    assert {"val_accuracy.png", "final_val_accuracy.png", "init_layers.png"} <= set(found)


def test_the_studies_draw_every_kind_of_figure() -> None:
    """What the test above covers: every figure the stages draw is one of some study."""
    kinds = {png for name in STUDIES for png in rendered(name)}
    assert kinds == {"val_accuracy.png", "val_loss.png", "final_val_accuracy.png", "seeds.png", "convergence.png",
                     "uniform_vs_normal.png", "depth.png", "phase.png", "probes.png", "spread.png",
                     "init_layers.png", "init_weights.png"}


def test_a_collision_is_found() -> None:
    fig, ax = plt.subplots(figsize=(3, 2), dpi=DPI)
    ax.set_title("a title")
    ax.text(0.5, 1.02, "on the title", transform=ax.transAxes, ha="center")
    ax.text(1.5, 0.5, "off the figure", transform=ax.transAxes)
    found = problems(fig)
    plt.close(fig)
    assert any("'on the title' overlaps" in issue or "overlaps 'on the title'" in issue for issue in found)
    assert any(issue.startswith("'off the figure' leaves the figure") for issue in found)


def texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def test_the_phase_diagram_has_a_cell_per_initializer_and_averages_none() -> None:
    """In the depth study, Glorot uniform, LeCun normal and orthogonal share σ_w² = 1: three
    columns, each cell its own accuracy, the depths and σ_w² ticked as measured."""
    fig, _ = rendered("depth")["phase.png"]
    networks = pd.read_csv(STUDIES["depth"] / "networks.csv").dropna(subset=["weight_variance"])
    relu, tanh = fig.axes[:2]
    assert [t.get_text().split("\n")[0] for t in relu.get_xticklabels()] == ["0.32", "0.333", "1", "1", "1", "2"]
    assert [t.get_text() for t in relu.get_yticklabels()] == ["2", "8", "16", "32"]
    written = sorted(t.get_text() for t in relu.texts)
    expected = sorted(f"{v:.2f}" for v in networks[networks.activation == "relu"].final_val_accuracy)
    assert written == expected  # 24 cells, each a (network, initializer) of the study, no mean of two


def test_the_plots_name_networks_and_initializers_in_words() -> None:
    drawn = {png: fig for png, (fig, _) in rendered("residual").items()}
    ticks = [t.get_text() for t in drawn["spread.png"].axes[0].get_xticklabels()]
    assert ticks == ["32 ReLU layers", "32 ReLU layers\nbatch norm", "32 ReLU layers\nresidual",
                     "32 ReLU layers\nresidual\nbatch norm", "32 ReLU layers\nresidual\nzero branches"]
    shown = texts(drawn["spread.png"])
    assert {"Glorot uniform", "He normal", "LeCun normal", "LSUV", "PyTorch default",
            "random normal, std 0.05"} <= set(shown)
    assert not any("_" in text for figure in drawn.values() for text in texts(figure) if "σ" not in text), \
        [text for figure in drawn.values() for text in texts(figure) if "_" in text and "σ" not in text]
    # the spread to as many decimals as tell it from zero, as the docs quote it
    assert "0.004\n(0.002–0.007)" in shown and "0.84\n(0.84–0.85)" in shown


def test_the_variance_argument_predicts_nothing_for_ones_and_identity() -> None:
    fig, _ = rendered("default")["init_layers.png"]
    activation = fig.axes[0]
    dashed = [line for line in activation.get_lines() if line.get_linestyle() == "--"]
    solid = {line.get_color(): line.get_label() for line in activation.get_lines() if line.get_linestyle() != "--"}
    assert sorted(solid[line.get_color()] for line in dashed) == sorted(set(solid.values()) - {"ones", "identity"})
    assert "not for ones, identity" in activation.get_title()


def test_diverged_runs_are_told_from_runs_at_chance() -> None:
    """The residual study: four initializers diverge on the plain residual stack (accuracy
    0.098), three stay at chance on the plain network (0.1135)."""
    drawn = {png: fig for png, (fig, _) in rendered("residual").items()}
    spread = drawn["spread.png"].axes[0]
    hollow = [line for line in spread.get_lines() if line.get_fillstyle() == "none"]
    assert len(hollow) == 4 and all(1.5 < line.get_xdata()[0] < 2.5 for line in hollow)  # on res_d32, the third
    at_chance = [line for line in spread.get_lines()
                 if line.get_fillstyle() == "full" and abs(line.get_ydata()[0] - 0.1135) < 1e-3]
    assert len(at_chance) == 3 and all(line.get_xdata()[0] < 0.5 for line in at_chance)  # on relu_d32, filled
    rows = texts(drawn["final_val_accuracy.png"])
    assert rows.count("diverged (3 of 3)") == 4


def test_a_committed_studys_pngs_are_what_the_code_draws_from_its_files(tmp_path: Path) -> None:
    """studies/run.py --redraw, into a folder of its own: the same PNGs, byte for byte, as
    committed (the figures are not stale, and drawing them is deterministic)."""
    run_study.redraw("activations", tmp_path)
    committed = ROOT / "studies" / "activations"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(p.name for p in committed.glob("*.png"))
    assert [p.name for p in tmp_path.glob("*.png") if p.read_bytes() != (committed / p.name).read_bytes()] == []


def test_the_phase_diagrams_theory_is_flat_across_columns_that_share_a_weight_variance() -> None:
    """Glorot uniform, LeCun normal and orthogonal (columns 2 to 4 of the depth study) share
    σ_w² = 1: the depth scale, a function of σ_w², is one value across them, not a slope."""
    fig, _ = rendered("depth")["phase.png"]
    for ax in fig.axes[:2]:
        for line in ax.get_lines():
            if line.get_label().startswith(("ξ_c", "6 ξ_c")):
                x, y = line.get_xdata(), line.get_ydata()
                across = y[(x >= 2) & (x <= 4)]
                assert len(across) > 10 and len(np.unique(across)) == 1, line.get_label()  # at criticality: inf
