"""Comparison plots of a study, drawn with matplotlib from the aggregated tables."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from initstudy.atomic import write_atomically  # noqa: E402

# Zoomed panels show the initializers whose final accuracy is within this of the best,
# or whose final loss is within this factor of the lowest.
ZOOM_ACCURACY_WITHIN = 0.05
ZOOM_LOSS_FACTOR = 2.0
DIVERGED_COLOUR = "#6e6e6e"  # a phase-diagram cell whose every run diverged (it has no accuracy)


# One hue per family of initializers (the label's first word), the same in every study.
FAMILY_COLOURS = {
    "glorot": "tab:blue", "he": "tab:red", "lecun": "tab:green", "random": "tab:purple",
    "orthogonal": "tab:orange", "identity": "tab:brown", "lsuv": "tab:pink", "zeros": "tab:gray",
    "ones": "tab:olive", "truncated": "tab:cyan",
}
OTHER_COLOURS = ["#393b79", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#e6550d", "#756bb1"]
# Lightness shifts within a family: uniform lighter, normal darker, then further shades.
SHADES = {"uniform": 0.16, "normal": -0.12, "": 0.0}
MORE_SHADES = [0.0, -0.12, 0.16, -0.22, 0.26, 0.08, -0.06]


def _shade(colour: str, shift: float) -> str:
    h, lightness, s = colorsys.rgb_to_hls(*to_rgb(colour))
    return to_hex(colorsys.hls_to_rgb(h, min(max(lightness + shift, 0.12), 0.85), s))


def colours(names: list[str]) -> dict[str, str]:
    """One colour per initializer label: a hue per family (glorot, he, …), lighter for a
    uniform variant and darker for a normal one, every label its own colour."""
    families = list(dict.fromkeys(name.split("_")[0] for name in names))
    unknown = iter([f for f in families if f not in FAMILY_COLOURS])
    hues = dict(FAMILY_COLOURS) | {f: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, f in enumerate(unknown)}
    result: dict[str, str] = {}
    for name in names:
        words = name.split("_")
        variant = next((w for w in words[1:] if w in SHADES), "")
        for shift in [SHADES[variant], *MORE_SHADES]:
            colour = _shade(hues[words[0]], shift)
            if colour not in result.values():
                break
        result[name] = colour
    return result


SEPARATOR = " · "  # between network and initializer in a label that names both


def label_colours(labels: list[str]) -> dict[str, str]:
    """colours() of the initializers behind labels that may name a network first: one
    initializer keeps its colour on every network."""
    palette = colours(list(dict.fromkeys(label.split(SEPARATOR)[-1] for label in labels)))
    return {label: palette[label.split(SEPARATOR)[-1]] for label in labels}


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `initializer` naming the network too (`net · init`) when it holds
    several networks, so that plots of one network's initializers can show them all."""
    if frame.network.nunique() <= 1:
        return frame
    return frame.assign(initializer=frame.network + SEPARATOR + frame.initializer)


def curve_data(epochs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch table for DVC's interactive plots: each row with its initializer's colour,
    and per accuracy column whether the initializer belongs in the zoomed panel (1) or not (0)."""
    epochs = labelled(epochs)
    data = epochs.assign(colour=epochs.initializer.map(label_colours(list(dict.fromkeys(epochs.initializer)))))
    for metric in ("val_accuracy", "accuracy"):
        final = epochs.sort_values("epoch").groupby("initializer").last()[metric]
        data[f"zoom_{metric}"] = data.initializer.isin(_leaders(final.dropna(), is_loss=False)).astype(int)
    return data


def _save(fig: plt.Figure, path: Path, dpi: int) -> None:
    """Write the figure to `path` atomically (a kill never leaves half a PNG) and close it;
    with constrained layout, saving is the one draw."""
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=dpi, metadata={"Software": None}))
    plt.close(fig)


def _leaders(final: pd.Series, is_loss: bool) -> list[str]:
    """The initializers whose final value is close to the best one's."""
    if is_loss:
        return list(final[final <= final.min() * ZOOM_LOSS_FACTOR].index)
    return list(final[final >= final.max() - ZOOM_ACCURACY_WITHIN].index)


def curves(epochs: pd.DataFrame, metric: str, path: Path, dpi: int) -> None:
    """Mean of `metric` over seeds per epoch with a ±1 std band, a line per initializer. One
    network: all initializers, and right the leaders zoomed in; several: a panel per network."""
    stats = (
        epochs.groupby(["network", "initializer", "epoch"], sort=False)[metric]
        .agg(["mean", "std"])
        .fillna({"std": 0.0})
        .reset_index()
    )
    names = list(dict.fromkeys(epochs.initializer))
    colors = label_colours(names)
    is_loss = metric.endswith("loss")
    label = metric.replace("_", " ")
    if stats.network.nunique() <= 1:
        final = stats.groupby("initializer", sort=False)["mean"].last().dropna()
        fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharex=True, layout="constrained")
        panels = list(zip(axes, [stats, stats[stats.initializer.isin(_leaders(final, is_loss))]]))
        for ax, title in zip(axes, ["all initializers", "closest to the best, zoomed"]):
            ax.set_title(title)
    else:
        networks = list(dict.fromkeys(stats.network))
        fig, grid = _grid(networks, ncols=min(len(networks), 4))
        panels = [(grid[network], group) for network, group in stats.groupby("network", sort=False)]
    for ax, shown in panels:
        for initializer, g in shown.groupby("initializer", sort=False):
            color = colors[initializer]
            ax.plot(g.epoch, g["mean"], label=initializer, color=color)
            ax.fill_between(g.epoch, g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.2)
        if is_loss:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = panels[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", loc="outside right center" if len(panels) == 2 else "center right")
    fig.suptitle(f"{label} per epoch (mean ± std over seeds)")
    _save(fig, path, dpi)


def final_accuracy(summary: dict[str, Any], epochs: pd.DataFrame, path: Path, dpi: int) -> None:
    """Final validation accuracy per initializer: mean ± std and a dot per seed; right: zoomed."""
    finals = epochs.sort_values("epoch").groupby(["initializer", "seed"], sort=False).last()
    summary = summary["initializers"]
    colors = label_colours(list(summary))
    means = pd.Series({n: e["final_val_accuracy"]["mean"] for n, e in summary.items()
                       if "final_val_accuracy" in e}).sort_values()
    names = [n for n in summary if n not in means.index] + list(means.index)
    panels = [("all initializers", names), ("closest to the best, zoomed", _leaders(means, is_loss=False))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(names) + 1.8), layout="constrained")
    for ax, (title, shown) in zip(axes, panels):
        for y, name in enumerate(shown):
            stats = summary[name].get("final_val_accuracy", {})
            if "mean" in stats:
                ax.errorbar(stats["mean"], y, xerr=stats.get("std", 0.0), fmt="o",
                            color=colors[name], capsize=4, markersize=7)
            seeds = finals.loc[name, "val_accuracy"] if name in finals.index else []
            ax.plot(list(seeds), [y] * len(seeds), "k.", markersize=4, alpha=0.6)
        ax.set_yticks(range(len(shown)), shown)
        ax.set(xlabel="final validation accuracy", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_xlim(0, 1)
    fig.suptitle("Final validation accuracy (marker: mean ± std over seeds; dots: single seeds)")
    _save(fig, path, dpi)


def _grid(
    names: list[str], ncols: int = 4, sharex: bool = True
) -> tuple[plt.Figure, dict[str, plt.Axes]]:
    """A panel per name, `ncols` to a row; unused panels hidden."""
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.6 * nrows + 0.6), sharex=sharex,
                             squeeze=False)
    # fixed spacing: a layout engine costs more than the drawing on a grid this size
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.8 / (2.6 * nrows + 0.6),
                        top=1 - 0.55 / (2.6 * nrows + 0.6), hspace=0.45, wspace=0.25)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    panels = dict(zip(names, axes.flat))
    for name, ax in panels.items():
        ax.set_title(name, fontsize="medium")
        ax.grid(alpha=0.3)
        if sharex:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, panels


def seeds(epochs: pd.DataFrame, path: Path, dpi: int) -> None:
    """A panel per initializer: every seed's validation accuracy (solid; stability from seed
    to seed) and the mean training accuracy (dashed; the generalization gap)."""
    names = list(dict.fromkeys(epochs.initializer))
    colors = label_colours(names)
    train = epochs.groupby(["initializer", "epoch"], sort=False).accuracy.mean()
    fig, panels = _grid(names or ["no run that did not diverge"])
    for (name, _), run in epochs.groupby(["initializer", "seed"], sort=False):
        label = None if panels[name].lines else "validation, a line per seed"
        panels[name].plot(run.epoch, run.val_accuracy, color=colors[name], alpha=0.8, linewidth=1, label=label)
    for name in names:
        panels[name].plot(train.loc[name].index, train.loc[name], "--", color="black", linewidth=1,
                          label="training, mean")
    if names:
        panels[names[0]].legend(fontsize="x-small")
    fig.suptitle("Every seed's validation accuracy (solid) and the mean training accuracy (dashed)")
    fig.supxlabel("epoch")
    _save(fig, path, dpi)


def uniform_vs_normal(epochs: pd.DataFrame, families: list[str], path: Path, dpi: int) -> None:
    """A panel per family (glorot, he, …) whose uniform and normal variants `epochs` both hold:
    the two, mean ± std over seeds."""
    stats = epochs.groupby(["initializer", "epoch"]).val_accuracy.agg(["mean", "std"]).fillna({"std": 0.0})
    fig, panels = _grid(families, ncols=len(families))
    for family in families:
        for variant, style in (("uniform", "-"), ("normal", "--")):
            curve = stats.loc[f"{family}_{variant}"]
            line, = panels[family].plot(curve.index, curve["mean"], style, label=variant)
            panels[family].fill_between(curve.index, curve["mean"] - curve["std"],
                                        curve["mean"] + curve["std"], color=line.get_color(), alpha=0.2)
        panels[family].legend(fontsize="small")
    fig.suptitle("Uniform vs normal: validation accuracy (mean ± std over seeds)")
    fig.supxlabel("epoch")
    _save(fig, path, dpi)


def convergence(runs: pd.DataFrame, target: float, path: Path, dpi: int) -> None:
    """Epochs until validation accuracy first reaches `target`: a dot per seed, a bar for the mean."""
    colors = label_colours(list(dict.fromkeys(runs.initializer)))
    runs = runs[~runs.diverged.astype(bool)]
    means = runs.groupby("initializer", sort=False).epochs_to_target.mean()
    # bottom to top: never reached, then slowest to fastest
    order = list(means.fillna(math.inf).sort_values(ascending=False, kind="stable").index)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(order) + 1.8), layout="constrained")
    for y, name in enumerate(order):
        if math.isnan(means[name]):
            ax.text(0.1, y, "never reached", va="center", fontsize="small", color="gray")
            continue
        ax.barh(y, means[name], color=colors[name], alpha=0.5)
        reached = runs[runs.initializer == name].epochs_to_target.dropna()
        ax.plot(reached, [y] * len(reached), "k.", markersize=5)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=f"epochs until validation accuracy ≥ {target:g}",
           title="Convergence speed (bar: mean over seeds that reached it; dots: seeds)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path, dpi)


def init_layers(layers: pd.DataFrame, path: Path, dpi: int) -> None:
    """At initialization, by layer, a row of panels per network: the std of what each layer hands
    on (dashed: what the variance argument predicts, and where it has nothing to say, a note
    saying so), kernel gradient norm, inactive units; mean over seeds."""
    names = list(dict.fromkeys(layers.initializer))
    colors = label_colours(names)
    networks = list(dict.fromkeys(layers.network))
    means = layers.groupby(["network", "initializer", "layer"], sort=False).mean(numeric_only=True)
    panels = [("activation_std", "output std (dashed: predicted)", "log"),
              ("gradient_norm", "kernel's gradient norm", "log"),
              ("inactive_fraction", "dead or saturated units", "linear")]
    fig, axes = plt.subplots(len(networks), 3, figsize=(17, 1 + 3.6 * len(networks)), layout="constrained",
                             squeeze=False)
    for row, network in zip(axes, networks):
        for ax, (column, title, scale) in zip(row, panels):
            for name in names:
                curve = means.loc[(network, name), column]
                # zeros give exact 0: drawn at the bottom of a log axis instead of disappearing
                values = curve.clip(lower=1e-8) if scale == "log" else curve
                ax.plot(curve.index, values, "o-", color=colors[name], label=name, markersize=3)
                if column == "activation_std":
                    predicted = means.loc[(network, name), "predicted_std"].clip(lower=1e-8)
                    ax.plot(predicted.index, predicted, "--", color=colors[name], linewidth=1)
            if column == "activation_std" and means.loc[network, "predicted_std"].isna().all():
                ax.text(0.5, 0.95, "no prediction: the variance argument\ndoes not cover convolutions and pooling",
                        transform=ax.transAxes, ha="center", va="top", fontsize="small")
            ax.set_yscale(scale)
            ax.set(title=f"{network}: {title}" if len(networks) > 1 else title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    fig.supxlabel("Dense or Conv2D layer, input to output (last: output)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    fig.suptitle("The networks at initialization, on one batch of training data: the std of each layer's output "
                 "(of a residual branch's last layer: the stream it is added to), the norm of the loss gradient "
                 "w.r.t. its kernel,\nits dead (ReLU) or saturated (tanh, sigmoid) units; values ≤ 1e-8 drawn at 1e-8")
    _save(fig, path, dpi)


def depth(networks: pd.DataFrame, target: float, path: Path, dpi: int) -> None:
    """Per activation, against depth: the final val accuracy (mean, 95% CI) and the epochs to
    the target of each initializer."""
    activations = list(dict.fromkeys(networks.activation))
    colors = label_colours(list(dict.fromkeys(networks.initializer)))
    fig, axes = plt.subplots(2, len(activations), figsize=(6.5 * len(activations) + 2, 8), squeeze=False,
                             sharex=True, layout="constrained")
    for column, activation in enumerate(activations):
        for name, g in networks[networks.activation == activation].sort_values("depth").groupby(
                "initializer", sort=False):
            low, high = g.final_val_accuracy - g.ci95_low, g.ci95_high - g.final_val_accuracy
            axes[0][column].errorbar(g.depth, g.final_val_accuracy, yerr=[low.fillna(0), high.fillna(0)],
                                     fmt="o-", capsize=3, color=colors[name], label=name)
            axes[1][column].plot(g.depth, g.epochs_to_target, "o-", color=colors[name])
        axes[0][column].set(title=f"{activation}: final validation accuracy (95% CI)", ylim=(0, 1))
        axes[1][column].set(title=f"{activation}: epochs to validation accuracy {target:g} (gap: never)",
                            xlabel="hidden layers")
        for ax in axes[:, column]:
            ax.set_xscale("log", base=2)
            ax.set_xlim(networks.depth.min() / 1.4, networks.depth.max() * 1.4)  # also where nothing is drawn
            ax.xaxis.set_major_formatter("{x:g}")
            ax.grid(alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    fig.suptitle("Where the initializer decides whether a network trains: depth")
    _save(fig, path, dpi)


def probes(table: pd.DataFrame, path: Path, dpi: int) -> None:
    """During training, for the deepest networks: a panel per initializer of each layer's output
    std and kernel gradient norm, a line per probed epoch (mean over the seeds probed then; a
    diverged run stops before its later probes)."""
    deepest = table.groupby("network").layer.max()
    names = list(dict.fromkeys(table.initializer))
    rows = [(network, measure) for network in deepest.index if deepest[network] == deepest.max()
            for measure in ("activation_std", "gradient_norm")]
    means = table.groupby(["network", "initializer", "epoch", "layer"]).mean(numeric_only=True)
    probed = set(zip(table.network, table.initializer, table.epoch))
    epochs = sorted(table.epoch.unique())
    shades = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(epochs)))
    fig, axes = plt.subplots(len(rows), len(names), figsize=(3.2 * len(names) + 1.5, 2.8 * len(rows) + 0.8),
                             squeeze=False, sharex=True, layout="constrained")
    for (network, measure), row in zip(rows, axes):
        for ax, name in zip(row, names):
            for epoch, shade in zip(epochs, shades):
                if (network, name, epoch) not in probed:  # every run stopped before it: diverged
                    continue
                curve = means.loc[(network, name, epoch), measure].clip(lower=1e-12)
                ax.plot(curve.index, curve, color=shade, label=f"epoch {epoch}")
            ax.set_yscale("log")
            ax.set_title(f"{network} · {name}\n{measure.replace('_', ' ')}", fontsize="small")
            ax.grid(alpha=0.3)
    fig.supxlabel("layer, input to output")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    fig.suptitle("During training: do vanished activations and gradients stay vanished? (values ≤ 1e-12 at 1e-12)")
    _save(fig, path, dpi)


def init_weights(histograms: pd.DataFrame, path: Path, dpi: int) -> None:
    """Histograms of each layer's initial kernel weights, a panel per initializer."""
    names = list(dict.fromkeys(histograms.initializer))
    fig, panels = _grid(names, sharex=False)
    for (name, layer), h in histograms.groupby(["initializer", "layer"], sort=False):
        share = h["count"] / h["count"].sum()
        panels[name].stairs(share, [*h.bin_low, h.bin_high.iloc[-1]], label=f"layer {layer}")
    next(iter(panels.values())).legend(fontsize="x-small")
    fig.suptitle("Initial kernel weights per layer (share of weights per bin; first seed)")
    fig.supxlabel("weight value")
    _save(fig, path, dpi)


def _edges(values: np.ndarray) -> np.ndarray:
    """Cell edges halfway between sorted centre values, the outer ones as far out as the inner."""
    middle = (values[1:] + values[:-1]) / 2
    return np.concatenate([[2 * values[0] - middle[0]], middle, [2 * values[-1] - middle[-1]]])


def phase(networks: pd.DataFrame, diagrams: dict[str, Any], path: Path, dpi: int) -> None:
    """Per activation whose study varies depth and σ_w²: the mean final val accuracy of each
    (depth, σ_w²) cell, with the mean-field depth scale ξ_c and 6 ξ_c drawn over it at the
    study's σ_b², the critical σ_w² dashed, and × on the cells where theory and measurement
    disagree (aggregate's phase_diagram)."""
    from initstudy.theory import critical_weight_variance, depth_scale  # SciPy: only where drawn

    fig, axes = plt.subplots(1, len(diagrams), figsize=(7 * len(diagrams) + 1.5, 5.5), squeeze=False,
                             layout="constrained")
    for ax, (activation, entry) in zip(axes[0], diagrams.items()):
        group = networks[networks.activation == activation].dropna(subset=["weight_variance", "bias_variance"])
        grid = group.pivot_table(index="depth", columns="weight_variance", values="final_val_accuracy")
        sigmas, depths = grid.columns.to_numpy(float), grid.index.to_numpy(float)
        mesh = ax.pcolormesh(_edges(sigmas), _edges(depths), grid.to_numpy(), vmin=0.1, vmax=1.0,
                             cmap=plt.get_cmap("viridis").with_extremes(bad=DIVERGED_COLOUR))
        bias = float(group.bias_variance.mode().iloc[0])
        dense = np.linspace(sigmas.min(), sigmas.max(), 61)
        scales = np.array([depth_scale(activation, v, bias) for v in dense])
        ax.plot(dense, scales, color="white", lw=1.5, ls=":", label="ξ_c")
        ax.plot(dense, 6 * scales, color="white", lw=2, label="6 ξ_c: trainable below (theory)")
        try:
            critical = critical_weight_variance(activation, bias)
            ax.axvline(critical, color="white", ls="--", lw=1, label=f"critical σ_w² = {critical:.2f}")
        except ValueError:  # no χ₁ = 1 in the searched range
            pass
        for cell in entry["disagree"]:
            ax.plot(cell["weight_variance"], cell["depth"], "x", color="red", ms=10, mew=2)
        ax.plot([], [], "x", color="red", mew=2, label="theory and measurement disagree")
        if np.isnan(grid.to_numpy()).any():
            ax.fill([], [], color=DIVERGED_COLOUR, label="every run diverged")
        for row in group[group.initializer == "torch_default"].itertuples():
            ax.annotate("PyTorch default", (row.weight_variance, row.depth), color="white", fontsize="x-small",
                        ha="center", va="bottom", xytext=(0, 6), textcoords="offset points")
        ax.set(xlim=(_edges(sigmas)[0], _edges(sigmas)[-1]), ylim=(_edges(depths)[0], _edges(depths)[-1]),
               xlabel="σ_w² (weights N(0, σ_w²/fan_in))", ylabel="hidden layers",
               title=f"{activation}, σ_b² = {bias:g}: {entry['agree']}/{entry['cells']} cells agree "
                     f"({entry['agreement']:.0%})")
        ax.legend(fontsize="x-small", loc="upper right", facecolor="#222222", edgecolor="none", labelcolor="white",
                  framealpha=0.75)
        fig.colorbar(mesh, ax=ax, label="final validation accuracy (mean over seeds)")
    fig.suptitle(f"Where a network can train: measurement (colour; trains = accuracy above "
                 f"{next(iter(diagrams.values()))['trains_above']:g}) and mean-field theory (lines)")
    _save(fig, path, dpi)


def spread(runs: pd.DataFrame, spreads: dict[str, Any], path: Path, dpi: int) -> None:
    """Per network, each initializer's mean final val accuracy over its runs (diverged ones at
    the accuracy they ended with), the range from worst to best, and the spread with its 95%
    interval written above it: where the range is short, the initializer hardly matters."""
    networks = list(spreads)
    names = list(dict.fromkeys(runs.initializer))
    colors = colours(names)
    means = runs.groupby(["network", "initializer"]).final_val_accuracy.mean()
    fig, ax = plt.subplots(figsize=(1.6 * len(networks) + 3.5, 5), layout="constrained")
    offsets = np.linspace(-0.25, 0.25, len(names)) if len(names) > 1 else np.zeros(1)
    for x, network in enumerate(networks):
        entry = spreads[network]
        values = means.loc[network]
        ax.vlines(x, values.min(), values.max(), color="0.75", linewidth=10, zorder=1)
        for offset, name in zip(offsets, names):
            ax.plot(x + offset, values[name], "o", color=colors[name], markeredgecolor="black",
                    markeredgewidth=0.4, label=name if x == 0 else None, zorder=2)
        interval = f"\n({entry['ci95_low']:.2f}–{entry['ci95_high']:.2f})" if "ci95_low" in entry else ""
        ax.annotate(f"{entry['spread']:.2f}{interval}", (x, 1.0), ha="center", va="bottom", fontsize="small")
    ax.set_xticks(range(len(networks)), networks, rotation=20, ha="right")
    ax.set(ylim=(0, 1.12), ylabel="mean final validation accuracy over seeds", xlim=(-0.6, len(networks) - 0.4))
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize="small", loc="outside right center")
    fig.suptitle("Does the initializer matter? Each initializer's accuracy per network; above: the spread "
                 "(best − worst, 95% CI)", fontsize="medium")
    _save(fig, path, dpi)


def diverged_figure(runs: pd.DataFrame) -> plt.Figure:
    """A figure for a study whose every run diverged (no curve, no accuracy to draw): it says
    so, with each run's reason (the first 20)."""
    shown = runs.head(20)
    lines = [f"{r.network} · {r.initializer} · seed {r.seed}: {r.diverged_because}" for r in shown.itertuples()]
    if len(runs) > len(shown):
        lines.append(f"… and {len(runs) - len(shown)} more (metrics/runs.csv)")
    fig = plt.figure(figsize=(9, 0.25 * len(lines) + 1.2), layout="constrained")
    fig.suptitle(f"Every run of this study diverged ({len(runs)} of {len(runs)}): no curve or accuracy to draw")
    fig.text(0.02, 0.5, "\n".join(lines), va="center", fontsize="small")
    return fig


def all_diverged(runs: pd.DataFrame, path: Path, dpi: int) -> None:
    """diverged_figure, in place of a comparison plot."""
    _save(diverged_figure(runs), path, dpi)
