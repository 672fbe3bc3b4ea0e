"""Comparison plots of a study, drawn with matplotlib from the aggregated tables."""

from __future__ import annotations

import colorsys
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from initstudy.atomic import write_atomically  # noqa: E402

# Zoomed panels show the initializers whose final accuracy is within this of the best,
# or whose final loss is within this factor of the lowest.
ZOOM_ACCURACY_WITHIN = 0.05
ZOOM_LOSS_FACTOR = 2.0
DIVERGED_COLOUR = "#6e6e6e"  # what diverged: a phase-diagram cell whose every run did (it has no accuracy)


# One hue per family of initializers (the label's first word), the same in every study: the
# Okabe–Ito and Tol palettes, told apart with the common colour-vision deficiencies.
FAMILY_COLOURS = {
    "glorot": "#0072B2", "he": "#D55E00", "lecun": "#009E73", "random": "#CC79A7", "orthogonal": "#E69F00",
    "identity": "#332288", "lsuv": "#000000", "zeros": "#7F7F7F", "ones": "#999933", "truncated": "#44AA99",
    "torch": "#882255",
}
# Labels of no known family, each its own colour in turn (Tol's muted palette).
OTHER_COLOURS = ["#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"]
# Lightness shifts within a family: uniform lighter, normal darker, then further shades.
SHADES = {"uniform": 0.16, "normal": -0.12, "": 0.0}
MORE_SHADES = [0.0, -0.12, 0.16, -0.22, 0.26, 0.08, -0.06]
# A marker per initializer where they sit side by side, so that shape tells them apart as well as colour.
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">", "h", "p"]


def _shade(colour: str, shift: float) -> str:
    h, lightness, s = colorsys.rgb_to_hls(*to_rgb(colour))
    return to_hex(colorsys.hls_to_rgb(h, min(max(lightness + shift, 0.12), 0.85), s))


def _family(label: str) -> str:
    """The family a label's colour comes from: its first word if that names a known family,
    else the label itself."""
    first = label.split("_")[0]
    return first if first in FAMILY_COLOURS else label


def colours(names: list[str]) -> dict[str, str]:
    """One colour per initializer label: a hue per family (glorot, he, …), lighter for a
    uniform variant and darker for a normal one, every label its own colour."""
    families = list(dict.fromkeys(_family(name) for name in names))
    unknown = iter([f for f in families if f not in FAMILY_COLOURS])
    hues = dict(FAMILY_COLOURS) | {f: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, f in enumerate(unknown)}
    result: dict[str, str] = {}
    for name in names:
        words = name.split("_")
        variant = next((w for w in words[1:] if w in SHADES), "") if _family(name) != name else ""
        for shift in [SHADES[variant], *MORE_SHADES]:
            colour = _shade(hues[_family(name)], shift)
            if colour not in result.values():
                break
        result[name] = colour
    return result


# Plain names of the initializers Keras names by label alone.
INITIALIZER_NAMES = {
    "glorot_normal": "Glorot normal", "glorot_uniform": "Glorot uniform", "he_normal": "He normal",
    "he_uniform": "He uniform", "lecun_normal": "LeCun normal", "lecun_uniform": "LeCun uniform",
    "lsuv": "LSUV", "torch_default": "PyTorch default",
}
ACTIVATION_NAMES = {"relu": "ReLU", "tanh": "tanh", "sigmoid": "sigmoid", "selu": "SELU", "elu": "ELU", "gelu": "GELU"}


def initializer_name(spec: Any) -> str:
    """What an initializer of the catalogue is, in words: `He normal`, `σ_w² = 1.76`, …"""
    name = spec.name
    if name in ("orthogonal", "identity"):
        return name if spec.gain == 1 else f"{name} × {spec.gain:g}"
    if name in ("random_normal", "truncated_normal"):
        mean = f"mean {spec.mean:g}, " if spec.mean else ""
        return f"{name.replace('_', ' ')}, {mean}std {spec.stddev:g}"
    if name == "random_uniform":
        if spec.minval == -spec.maxval:
            return f"random uniform ±{spec.maxval:g}"
        return f"random uniform [{spec.minval:g}, {spec.maxval:g}]"
    if name == "variance_scaling":
        if spec.mode == "fan_in" and spec.distribution == "untruncated_normal":
            return f"σ_w² = {spec.scale:g}"
        return f"variance scaling {spec.scale:g}, {spec.mode.replace('_', ' ')}, {spec.distribution.replace('_', ' ')}"
    if name == "constant":
        return f"constant {spec.value:g}"
    return INITIALIZER_NAMES.get(name, name)


def network_name(net: Any) -> str:
    """What a network of the catalogue is, in words: `32 ReLU layers, residual, batch norm`, …"""
    units = list(net.hidden_units)
    activation = ACTIVATION_NAMES.get(net.activation, net.activation)
    if net.family == "cnn":
        head = f"{activation} CNN {'-'.join(map(str, net.conv_filters))}, dense {'-'.join(map(str, units))}"
    elif len(set(units)) == 1:
        head = f"{len(units)} {activation} layers"
    else:
        head = f"{activation} {'-'.join(map(str, units))}"
    parts = [head] + (["residual"] if net.residual else [])
    if net.normalization != "none":
        parts.append(f"{net.normalization} norm")
    if net.residual and net.branch_scale != 1:
        parts.append("zero branches" if net.branch_scale == 0 else f"branches × {net.branch_scale:g}")
    bias = net.bias_initializer
    if bias.name == "random_normal" and not bias.mean:
        parts.append(f"σ_b² {bias.stddev ** 2:.3g}")
    elif bias.name != "zeros":
        parts.append(f"bias {initializer_name(bias)}")
    if net.dropout:
        parts.append(f"dropout {net.dropout:g}")
    return ", ".join(parts)


def plain_names(params: Any, labels: list[str] | None = None) -> dict[str, str]:
    """Label -> plain name, for every initializer and network of the catalogue (or of `labels`);
    two labels whose names coincide keep their label beside it."""
    names = {label: initializer_name(spec) for label, spec in params.initializers.items()}
    names |= {label: network_name(net) for label, net in params.networks.items()}
    if labels is not None:
        names = {label: names[label] for label in labels if label in names}
    counts = pd.Series(list(names.values())).value_counts()
    return {label: name if counts[name] == 1 else f"{name} ({label})" for label, name in names.items()}


def _namer(names: dict[str, str] | None):
    """label (or `network · initializer`) -> its plain name."""
    names = names or {}

    def show(label: str) -> str:
        return SEPARATOR.join(names.get(part, part) for part in str(label).split(SEPARATOR))

    return show


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


def curve_data(epochs: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """The per-epoch table for DVC's interactive plots: each row with its initializer's colour
    and plain name, and per accuracy column whether the initializer belongs in the zoomed panel
    (1) or not (0)."""
    epochs = labelled(epochs)
    data = epochs.assign(colour=epochs.initializer.map(label_colours(list(dict.fromkeys(epochs.initializer)))),
                         name=epochs.initializer.map(_namer(names)))
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


def curves(epochs: pd.DataFrame, metric: str, path: Path, dpi: int, names: dict[str, str] | None = None) -> None:
    """Mean of `metric` over seeds per epoch with a ±1 std band, a line per initializer. One
    network: all initializers, and right the leaders zoomed in; several: a panel per network."""
    show = _namer(names)
    stats = (
        epochs.groupby(["network", "initializer", "epoch"], sort=False)[metric]
        .agg(["mean", "std"])
        .fillna({"std": 0.0})
        .reset_index()
    )
    labels = list(dict.fromkeys(epochs.initializer))
    colors = label_colours(labels)
    is_loss = metric.endswith("loss")
    label = metric.replace("val_", "validation ").replace("_", " ")
    single = stats.network.nunique() <= 1
    if single:
        final = stats.groupby("initializer", sort=False)["mean"].last().dropna()
        fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharex=True, layout="constrained")
        panels = list(zip(axes, [stats, stats[stats.initializer.isin(_leaders(final, is_loss))]]))
        for ax, title in zip(axes, ["all initializers", "closest to the best, zoomed"]):
            ax.set_title(title)
    else:
        networks = list(dict.fromkeys(stats.network))
        fig, grid = _grid([show(n) for n in networks], ncols=min(len(networks), 4), legend_right=True)
        panels = [(grid[show(network)], group) for network, group in stats.groupby("network", sort=False)]
    for ax, shown in panels:
        for initializer, g in shown.groupby("initializer", sort=False):
            color = colors[initializer]
            ax.plot(g.epoch, g["mean"], label=show(initializer), color=color,
                    marker="o" if len(g) < 3 else None, markersize=4)  # one epoch is a point, not a line
            ax.fill_between(g.epoch, g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.2)
        if is_loss:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if single:
            ax.set(xlabel="epoch", ylabel=label)
    handles, labels = panels[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", loc="outside right center" if single else "center right")
    if single:
        fig.suptitle(f"{label} per epoch (mean ± std over seeds)")
    else:
        _frame(fig, f"{label} per epoch (mean ± std over seeds)", "epoch")
        fig.supylabel(label, x=0.3 / fig.get_figwidth())
    _save(fig, path, dpi)


def final_accuracy(summary: dict[str, Any], epochs: pd.DataFrame, path: Path, dpi: int,
                   names: dict[str, str] | None = None) -> None:
    """Final validation accuracy per initializer: mean ± std and a dot per seed; right: zoomed.
    An initializer whose runs diverged says so in its row."""
    show = _namer(names)
    finals = epochs.sort_values("epoch").groupby(["initializer", "seed"], sort=False).last()
    summary = summary["initializers"]
    colors = label_colours(list(summary))
    means = pd.Series({n: e["final_val_accuracy"]["mean"] for n, e in summary.items()
                       if "final_val_accuracy" in e}).sort_values()
    labels = [n for n in summary if n not in means.index] + list(means.index)
    panels = [("all initializers", labels), ("closest to the best, zoomed", _leaders(means, is_loss=False))]
    longest = max((len(show(n)) for n in labels), default=0) + 16  # and room for "(k of n diverged)"
    fig, axes = plt.subplots(1, 2, figsize=(max(13.0, 2 * (0.075 * longest + 4.5)), 0.35 * len(labels) + 1.8),
                             layout="constrained")
    for ax, (title, shown) in zip(axes, panels):
        for y, name in enumerate(shown):
            stats = summary[name].get("final_val_accuracy", {})
            if "mean" in stats:
                ax.errorbar(stats["mean"], y, xerr=stats.get("std", 0.0), fmt="o",
                            color=colors[name], capsize=4, markersize=7)
            else:
                ax.text(0.01, y, f"diverged ({summary[name].get('diverged', 0)} of {summary[name].get('runs', 0)})",
                        va="center", fontsize="small", color=DIVERGED_COLOUR, fontstyle="italic")
            seeds = finals.loc[name, "val_accuracy"] if name in finals.index else []
            ax.plot(list(seeds), [y] * len(seeds), "k.", markersize=4, alpha=0.6)
        diverged = {n: summary[n].get("diverged", 0) for n in shown}
        ax.set_yticks(range(len(shown)), [show(n) + (f" ({diverged[n]} of {summary[n]['runs']} diverged)"
                                                     if diverged[n] and n in means.index else "") for n in shown])
        ax.set_ylim(-0.7, len(shown) - 0.3)
        ax.set(xlabel="final validation accuracy", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_xlim(0, 1)
    fig.suptitle("Final validation accuracy (marker: mean ± std over the seeds that did not diverge; "
                 "dots: single seeds)")
    _save(fig, path, dpi)


def _grid(
    names: list[str], ncols: int = 4, sharex: bool = True, legend_right: bool = False
) -> tuple[plt.Figure, dict[str, plt.Axes]]:
    """A panel per name (its title wrapped to two lines at most), `ncols` to a row; unused
    panels hidden; `legend_right`: room for a figure legend right of the panels."""
    nrows = math.ceil(len(names) / ncols)
    width, height = 3.4 * ncols + (2.4 if legend_right else 0), 2.9 * nrows + 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), sharex=sharex, squeeze=False)
    # fixed spacing, in inches: a layout engine costs more than the drawing on a grid this size
    fig.subplots_adjust(left=1.15 / width, right=1 - (2.5 if legend_right else 0.2) / width, bottom=0.75 / height,
                        top=1 - 0.75 / height, hspace=0.45, wspace=0.35)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    panels = dict(zip(names, axes.flat))
    for name, ax in panels.items():
        ax.set_title(textwrap.fill(textwrap.shorten(name, 88, placeholder="…"), 44), fontsize="small")
        ax.grid(alpha=0.3)
        if sharex:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    return fig, panels


def _frame(fig: plt.Figure, title: str, xlabel: str) -> None:
    """A grid's title and x label, a fixed distance (in inches) from its top and bottom."""
    height = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.12 / height, va="top")
    fig.supxlabel(xlabel, y=0.08 / height, va="bottom")


def seeds(epochs: pd.DataFrame, path: Path, dpi: int, names: dict[str, str] | None = None) -> None:
    """A panel per initializer: every seed's validation accuracy (solid; stability from seed
    to seed) and the mean training accuracy (dashed; the generalization gap)."""
    show = _namer(names)
    labels = list(dict.fromkeys(epochs.initializer))
    colors = label_colours(labels)
    train = epochs.groupby(["initializer", "epoch"], sort=False).accuracy.mean()
    fig, panels = _grid([show(n) for n in labels] or ["no run that did not diverge"])
    for (name, _), run in epochs.groupby(["initializer", "seed"], sort=False):
        ax = panels[show(name)]
        label = None if ax.lines else "validation, a line per seed"
        ax.plot(run.epoch, run.val_accuracy, color=colors[name], alpha=0.8, linewidth=1, label=label,
                marker="o" if len(run) < 3 else None, markersize=4)
    for name in labels:
        panels[show(name)].plot(train.loc[name].index, train.loc[name], "--", color="black", linewidth=1,
                                label="training, mean", marker="x" if len(train.loc[name]) < 3 else None)
    if labels:
        panels[show(labels[0])].legend(fontsize="x-small")
    _frame(fig, "Every seed's validation accuracy (solid) and the mean training accuracy (dashed)", "epoch")
    _save(fig, path, dpi)


FAMILY_NAMES = {"glorot": "Glorot", "he": "He", "lecun": "LeCun", "random": "random"}


def uniform_vs_normal(epochs: pd.DataFrame, families: list[str], path: Path, dpi: int) -> None:
    """A panel per family (glorot, he, …) whose uniform and normal variants `epochs` both hold:
    the two, mean ± std over seeds."""
    stats = epochs.groupby(["initializer", "epoch"]).val_accuracy.agg(["mean", "std"]).fillna({"std": 0.0})
    titles = {family: FAMILY_NAMES.get(family, family) for family in families}
    fig, panels = _grid(list(titles.values()), ncols=len(families))
    for family in families:
        ax = panels[titles[family]]
        for variant, style in (("uniform", "-"), ("normal", "--")):
            curve = stats.loc[f"{family}_{variant}"]
            line, = ax.plot(curve.index, curve["mean"], style, label=variant,
                            color=colours([f"{family}_{variant}"])[f"{family}_{variant}"])
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=line.get_color(), alpha=0.2)
        ax.legend(fontsize="small")
    _frame(fig, "Uniform vs normal: validation accuracy (mean ± std over seeds)", "epoch")
    _save(fig, path, dpi)


def convergence(runs: pd.DataFrame, target: float, path: Path, dpi: int, names: dict[str, str] | None = None) -> None:
    """Epochs until validation accuracy first reaches `target`: a dot per seed, a bar for the mean."""
    show = _namer(names)
    colors = label_colours(list(dict.fromkeys(runs.initializer)))
    every = runs
    runs = runs[~runs.diverged.astype(bool)]
    means = runs.groupby("initializer", sort=False).epochs_to_target.mean()
    # bottom to top: every run diverged, never reached, then slowest to fastest
    gone = [n for n in dict.fromkeys(every.initializer) if n not in means.index]
    order = gone + list(means.fillna(math.inf).sort_values(ascending=False, kind="stable").index)
    longest = max((len(show(n)) for n in order), default=0)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.075 * longest + 6), 0.35 * len(order) + 1.8), layout="constrained")
    for y, name in enumerate(order):
        if name in gone:
            ax.text(0.1, y, "diverged: every run", va="center", fontsize="small", color=DIVERGED_COLOUR,
                    fontstyle="italic")
            continue
        if math.isnan(means[name]):
            ax.text(0.1, y, "never reached", va="center", fontsize="small", color="gray")
            continue
        ax.barh(y, means[name], color=colors[name], alpha=0.5)
        reached = runs[runs.initializer == name].epochs_to_target.dropna()
        ax.plot(reached, [y] * len(reached), "k.", markersize=5)
    ax.set_yticks(range(len(order)), [show(n) for n in order])
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set(xlabel=f"epochs until validation accuracy ≥ {target:g}")
    fig.suptitle("Convergence speed (bar: mean over the seeds that reached it; dots: seeds)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path, dpi)


def init_layers(layers: pd.DataFrame, path: Path, dpi: int, names: dict[str, str] | None = None,
                unpredicted: frozenset[str] = frozenset()) -> None:
    """At initialization, by layer, a row of panels per network: the std of what each layer hands
    on (dashed: what the variance argument predicts; none for the `unpredicted` initializers,
    whose weights are not independent and zero-mean, and a note where it has nothing to say),
    kernel gradient norm, inactive units; mean over seeds."""
    show = _namer(names)
    labels = list(dict.fromkeys(layers.initializer))
    colors = label_colours(labels)
    networks = list(dict.fromkeys(layers.network))
    means = layers.groupby(["network", "initializer", "layer"], sort=False).mean(numeric_only=True)
    silent = [n for n in labels if n in unpredicted]
    predicted_title = "output std (dashed: predicted" + (f"; not for {', '.join(map(show, silent))})"
                                                         if silent else ")")
    panels = [("activation_std", predicted_title, "log"),
              ("gradient_norm", "kernel's gradient norm", "log"),
              ("inactive_fraction", "dead or saturated units", "linear")]
    fig, axes = plt.subplots(len(networks), 3, figsize=(17, 1.2 + 3.6 * len(networks)), layout="constrained",
                             squeeze=False)
    for row, network in zip(axes, networks):
        for ax, (column, title, scale) in zip(row, panels):
            for name in labels:
                curve = means.loc[(network, name), column]
                # zeros give exact 0: drawn at the bottom of a log axis instead of disappearing
                values = curve.clip(lower=1e-8) if scale == "log" else curve
                ax.plot(curve.index, values, "o-", color=colors[name], label=show(name), markersize=3)
                if column == "activation_std" and name not in unpredicted:
                    predicted = means.loc[(network, name), "predicted_std"].clip(lower=1e-8)
                    ax.plot(predicted.index, predicted, "--", color=colors[name], linewidth=1)
            if column == "activation_std" and means.loc[network, "predicted_std"].isna().all():
                ax.text(0.5, 0.95, "no prediction: the variance argument\ndoes not cover convolutions and pooling",
                        transform=ax.transAxes, ha="center", va="top", fontsize="small")
            ax.set_yscale(scale)
            ax.set_title(f"{show(network)}: {title}" if len(networks) > 1 else title, fontsize="medium")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(alpha=0.3)
    fig.supxlabel("Dense or Conv2D layer, input to output (last: output)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    fig.suptitle("The networks at initialization, on one batch of training data: the std of each layer's output "
                 "(of a residual branch's last layer: the stream it is added to),\nthe norm of the loss gradient "
                 "w.r.t. its kernel, its dead (ReLU) or saturated (tanh, sigmoid) units; values ≤ 1e-8 drawn at 1e-8",
                 fontsize="medium")
    _save(fig, path, dpi)


def depth(networks: pd.DataFrame, runs: pd.DataFrame, target: float, path: Path, dpi: int,
          names: dict[str, str] | None = None) -> None:
    """Per activation, against depth (ticked at the depths measured): each initializer's mean
    final val accuracy over the seeds that did not diverge, and each seed's; below, the epochs
    to the target, only where they differ (a single value says nothing a line could). Where
    each initializer is a σ_w² of its own, their colours run in its order."""
    show = _namer(names)
    activations = sorted(dict.fromkeys(networks.activation))
    variances = networks.groupby("initializer", sort=False).weight_variance.agg(["first", "nunique"])
    if len(variances) > 2 and networks.weight_variance.notna().all() and variances["first"].is_unique \
            and (variances["nunique"] == 1).all():
        # a σ_w² per initializer: a sequential palette in its order, and the legend in it too
        order = list(variances["first"].sort_values().index)
        colors = dict(zip(order, map(to_hex, plt.get_cmap("plasma")(np.linspace(0, 0.88, len(order))))))
        networks = networks.assign(rank=networks.initializer.map(order.index)).sort_values("rank", kind="stable")
    else:
        colors = label_colours(list(dict.fromkeys(networks.initializer)))
    kept = runs[~runs.diverged.astype(bool)].merge(networks[["network", "depth"]].drop_duplicates(), on="network")
    reached = networks.epochs_to_target.dropna()
    timed = reached.nunique() > 1
    fig, axes = plt.subplots(2 if timed else 1, len(activations), figsize=(6.5 * len(activations) + 2.5,
                             8 if timed else 4.8), squeeze=False, sharex=True, layout="constrained")
    depths = sorted(networks.depth.unique())
    for column, activation in enumerate(activations):
        top = axes[0][column]
        for name, g in networks[networks.activation == activation].sort_values("depth", kind="stable").groupby(
                "initializer", sort=False):
            top.plot(g.depth, g.final_val_accuracy, "o-", color=colors[name], label=show(name), markersize=5)
            seeds = kept[(kept.initializer == name) & kept.network.isin(g.network)]
            top.plot(seeds.depth, seeds.final_val_accuracy, "_", color=colors[name], markersize=9, alpha=0.8)
            if timed:
                axes[1][column].plot(g.depth, g.epochs_to_target, "o-", color=colors[name])
        top.set(title=f"{ACTIVATION_NAMES.get(activation, activation)}: final validation accuracy", ylim=(0, 1),
                ylabel="mean over seeds (dashes: each seed)")
        if timed:
            axes[1][column].set(title=f"{ACTIVATION_NAMES.get(activation, activation)}: epochs to validation "
                                      f"accuracy {target:g} (gap: never)", ylabel="epochs")
            axes[1][column].yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes[-1][column].set_xlabel("hidden layers")
        for ax in axes[:, column]:
            ax.set_xscale("log", base=2)
            ax.set_xlim(min(depths) / 1.25, max(depths) * 1.25)  # also where nothing is drawn
            ax.set_xticks(depths, [f"{d:g}" for d in depths])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.grid(alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    note = "" if timed or reached.empty else f" (every run that reached {target:g} did so in epoch {reached.iloc[0]:g})"
    fig.suptitle(f"Where the initializer decides whether a network trains: depth{note}")
    _save(fig, path, dpi)


def probes(table: pd.DataFrame, path: Path, dpi: int, names: dict[str, str] | None = None) -> None:
    """During training, for the deepest networks: a panel per initializer of each layer's output
    std and kernel gradient norm, a line per probed epoch (mean over the seeds probed then; a
    diverged run stops before its later probes); one log scale per row, so that vanished is
    vanished on every initializer alike."""
    show = _namer(names)
    deepest = table.groupby("network").layer.max()
    labels = list(dict.fromkeys(table.initializer))
    networks = [n for n in dict.fromkeys(table.network) if deepest[n] == deepest.max()]
    rows = [(network, measure) for network in networks for measure in ("activation_std", "gradient_norm")]
    means = table.groupby(["network", "initializer", "epoch", "layer"]).mean(numeric_only=True)
    probed = set(zip(table.network, table.initializer, table.epoch))
    epochs = sorted(table.epoch.unique())
    shades = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(epochs)))
    fig, axes = plt.subplots(len(rows), len(labels), figsize=(2.6 * len(labels) + 3.2, 2.2 * len(rows) + 1.2),
                             squeeze=False, sharex=True, sharey="row", layout="constrained")
    for (network, measure), row in zip(rows, axes):
        for ax, name in zip(row, labels):
            for epoch, shade in zip(epochs, shades):
                if (network, name, epoch) not in probed:  # every run stopped before it: diverged
                    continue
                curve = means.loc[(network, name, epoch), measure].clip(lower=1e-12)
                ax.plot(curve.index, curve, color=shade, label=f"epoch {epoch}")
            if not any((network, name, epoch) in probed for epoch in epochs[1:]):
                ax.text(0.5, 0.5, "diverged:\nno later probe", transform=ax.transAxes, ha="center", va="center",
                        fontsize="x-small", color=DIVERGED_COLOUR)
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # a narrow range labels its minor ticks, and they collide
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{textwrap.fill(show(network), 22)}\n{measure.replace('_', ' ')}", fontsize="small")
    for ax, name in zip(axes[0], labels):
        ax.set_title(textwrap.fill(show(name), 16), fontsize="small")
    fig.supxlabel("layer, input to output")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize="small", loc="outside right center")
    fig.suptitle("During training: do vanished activations and gradients stay vanished? "
                 "(one scale per row; values ≤ 1e-12 at 1e-12)")
    _save(fig, path, dpi)


def init_weights(histograms: pd.DataFrame, path: Path, dpi: int, names: dict[str, str] | None = None) -> None:
    """Histograms of each layer's initial kernel weights, a panel per initializer."""
    show = _namer(names)
    labels = list(dict.fromkeys(histograms.initializer))
    fig, panels = _grid([show(n) for n in labels], sharex=False)
    for (name, layer), h in histograms.groupby(["initializer", "layer"], sort=False):
        share = h["count"] / h["count"].sum()
        panels[show(name)].stairs(share, [*h.bin_low, h.bin_high.iloc[-1]], label=f"layer {layer}")
    next(iter(panels.values())).legend(fontsize="x-small")
    _frame(fig, "Initial kernel weights per layer (share of weights per bin; first seed)", "weight value")
    _save(fig, path, dpi)


def _positions(measured: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where `values` fall on an axis that puts the sorted `measured` values (repeats at the mean
    of their places) at 0, 1, 2, …: linear between them, and beyond them as the nearest step."""
    places = pd.Series(np.arange(len(measured), dtype=float)).groupby(measured).mean()
    xs, ys = places.index.to_numpy(float), places.to_numpy()
    if len(xs) == 1:
        return np.full(len(values), ys[0])
    inside = np.interp(values, xs, ys)
    low = ys[0] + (values - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    high = ys[-1] + (values - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return np.where(values < xs[0], low, np.where(values > xs[-1], high, inside))


def _columns_value(measured: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The value an axis of columns 0, 1, 2, … at the sorted `measured` values stands for at
    each of `x`: the column's own value across a column, and across columns that share one
    (a theory of σ_w² alone is flat there); linear between neighbouring columns' values."""
    measured = np.sort(measured).astype(float)
    return np.interp(x, np.arange(len(measured), dtype=float), measured)


def phase(networks: pd.DataFrame, diagrams: dict[str, Any], path: Path, dpi: int,
          names: dict[str, str] | None = None) -> None:
    """Per activation whose study varies depth and σ_w² (in the order of their names): a cell per
    (network, initializer), a column per initializer by its σ_w² and a row per network by its
    depth, each ticked at the value measured, coloured by its mean final val accuracy and written
    in it; the mean-field depth scale ξ_c and 6 ξ_c drawn over it at the panel's σ_b², the
    critical σ_w² dashed, and a frame round the cells where theory and measurement disagree
    (aggregate's phase_diagram). Nothing is averaged over initializers that share a σ_w²."""
    from initstudy.theory import critical_weight_variance, depth_scale  # SciPy: only where drawn

    show = _namer(names)
    activations = sorted(diagrams)
    shadow = [patheffects.withStroke(linewidth=3.2, foreground="black")]
    cmap = plt.get_cmap("viridis").with_extremes(bad=DIVERGED_COLOUR)
    fig, axes = plt.subplots(1, len(activations), figsize=(7.2 * len(activations) + 1.2, 6.8), squeeze=False,
                             layout="constrained")
    for ax, activation in zip(axes[0], activations):
        entry = diagrams[activation]
        group = networks[networks.activation == activation].dropna(subset=["weight_variance", "bias_variance"])
        columns = group.drop_duplicates("initializer").sort_values(["weight_variance", "initializer"], kind="stable")
        rows = group.drop_duplicates("network").sort_values(["depth", "network"], kind="stable")
        cells = group.set_index(["network", "initializer"])
        grid = np.full((len(rows), len(columns)), np.nan)
        for j, network in enumerate(rows.network):
            for i, initializer in enumerate(columns.initializer):
                if (network, initializer) in cells.index:
                    grid[j, i] = cells.loc[(network, initializer), "final_val_accuracy"]
        mesh = ax.pcolormesh(np.arange(len(columns) + 1) - 0.5, np.arange(len(rows) + 1) - 0.5,
                             np.ma.masked_invalid(grid), vmin=0.1, vmax=1.0, cmap=cmap)
        for j, network in enumerate(rows.network):
            for i, initializer in enumerate(columns.initializer):
                value = grid[j, i]
                if (network, initializer) not in cells.index:
                    continue
                runs, gone = cells.loc[(network, initializer), ["runs", "diverged"]]
                text = "diverged" if math.isnan(value) else f"{value:.2f}"
                if 0 < gone < runs:  # the mean is the other runs': say so
                    text += f"\n{gone:g}/{runs:g} diverged"
                ax.text(i, j, text, ha="center", va="center", fontsize=7.5, zorder=5,
                        color="black" if not math.isnan(value) and value > 0.6 else "white",
                        # over the lines, in the cell's colour
                        bbox={"boxstyle": "square,pad=0.15", "edgecolor": "none",
                              "facecolor": DIVERGED_COLOUR if math.isnan(value) else mesh.cmap(mesh.norm(value))})
        bias = float(group.bias_variance.mode().iloc[0])
        sigmas, depths = columns.weight_variance.to_numpy(float), rows.depth.to_numpy(float)
        x = np.linspace(0, len(sigmas) - 1, 40 * len(sigmas) + 1)  # a point per 1/40 of a column
        scales = np.array([depth_scale(activation, v, bias) for v in _columns_value(sigmas, x)])
        ax.plot(x, _positions(depths, scales), color="white", lw=1.6, ls=(0, (3, 2)), label="ξ_c",
                path_effects=shadow)
        ax.plot(x, _positions(depths, 6 * scales), color="white", lw=2.2, label="6 ξ_c: trainable below (theory)",
                path_effects=shadow)
        title = f"{ACTIVATION_NAMES.get(activation, activation)}, σ_b² = {bias:g}"
        try:
            critical = critical_weight_variance(activation, bias)
            if sigmas.min() <= critical <= sigmas.max():
                at = np.flatnonzero(np.isclose(sigmas, critical, rtol=1e-3))  # every column at it, or between two
                for place in at if len(at) else [np.interp(critical, sigmas, np.arange(len(sigmas)))]:
                    ax.axvline(place, color="white", ls="-.", lw=1.4, label="critical σ_w² (χ₁ = 1)",
                               path_effects=shadow)
            title += f", critical σ_w² = {critical:.2f}"
        except ValueError:  # no χ₁ = 1 in the searched range
            pass
        place = {(n, i): (columns.initializer.tolist().index(i), rows.network.tolist().index(n))
                 for n, i in cells.index}
        for cell in entry["disagree"]:
            i, j = place[(cell["network"], cell["initializer"])]
            ax.add_patch(Rectangle((i - 0.46, j - 0.46), 0.92, 0.92, fill=False, edgecolor="#FF3B3B", lw=2.2,
                                   path_effects=shadow))
        ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor="#FF3B3B", lw=2.2, path_effects=shadow,
                               label="theory and measurement disagree"))
        if np.isnan(grid).any():
            ax.fill([], [], color=DIVERGED_COLOUR, label="every run diverged")
        ticks = []
        for row in columns.itertuples():
            name = show(row.initializer)
            tick = f"{row.weight_variance:.3g}"
            if not name.startswith("σ_w²"):
                tick += "\n" + textwrap.fill(name, 11)
            if abs(row.bias_variance - bias) > 1e-9:
                tick += f"\nσ_b² {row.bias_variance:.2g}"
            ticks.append(tick)
        ax.set_xticks(range(len(columns)), ticks, fontsize="x-small")
        ax.set_yticks(range(len(rows)), [f"{d:g}" for d in depths])
        ax.set(xlim=(-0.5, len(columns) - 0.5), ylim=(-0.5, len(rows) - 0.5),
               xlabel="σ_w² (weights of variance σ_w²/fan_in): a column per initializer, at its value",
               ylabel="hidden layers")
        ax.set_title(f"{title}\n{entry['agree']} of {entry['cells']} cells agree ({entry['agreement']:.0%})",
                     fontsize="medium")
    fig.colorbar(mesh, ax=axes[0].tolist(), label="final validation accuracy (mean over seeds)", shrink=0.9)
    handles = {}
    for ax in axes[0]:
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels())))
    legend = fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles),
                        fontsize="small", facecolor="#444444", labelcolor="white")
    legend.get_frame().set_alpha(1)
    fig.suptitle(textwrap.fill(f"Where a network can train: measurement (colour; trains = accuracy above "
                               f"{next(iter(diagrams.values()))['trains_above']:g}) and mean-field theory (lines)",
                               int(10 * fig.get_figwidth())))
    _save(fig, path, dpi)


def _accuracy(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def spread(runs: pd.DataFrame, spreads: dict[str, Any], path: Path, dpi: int,
           names: dict[str, str] | None = None) -> None:
    """Per network, each initializer's mean final val accuracy over its runs (diverged ones at
    the accuracy they ended with: a hollow marker where every run diverged, half filled where
    some did), the range from worst to best, and the spread with its 95% interval written above
    it, to as many decimals as tell it apart from zero: where the range is short, the
    initializer hardly matters."""
    show = _namer(names)
    networks = list(spreads)
    labels = list(dict.fromkeys(runs.initializer))
    colors = colours(labels)
    markers = dict(zip(labels, MARKERS * (len(labels) // len(MARKERS) + 1)))
    grouped = runs.assign(diverged=runs.diverged.astype(bool)).groupby(["network", "initializer"])
    means, diverged = grouped.final_val_accuracy.mean(), grouped.diverged.mean()
    fig, ax = plt.subplots(figsize=(1.9 * len(networks) + 4.2, 5.4), layout="constrained")
    offsets = np.linspace(-0.28, 0.28, len(labels)) if len(labels) > 1 else np.zeros(1)
    for x, network in enumerate(networks):
        entry = spreads[network]
        values = means.loc[network]
        ax.vlines(x, values.min(), values.max(), color="0.85", linewidth=14, zorder=1)
        for offset, name in zip(offsets, labels):
            share = diverged.loc[(network, name)]
            fill = "none" if share == 1 else ("bottom" if share > 0 else "full")
            ax.plot(x + offset, values[name], markers[name], color=colors[name], markeredgecolor=colors[name],
                    markerfacecolor=colors[name] if fill != "none" else "white", fillstyle=fill,
                    markerfacecoloralt="white", markeredgewidth=1.2, markersize=7,
                    label=show(name) if x == 0 else None, zorder=2)
        digits = 3 if entry["spread"] < 0.095 else 2
        interval = (f"\n({_accuracy(entry['ci95_low'], digits)}–{_accuracy(entry['ci95_high'], digits)})"
                    if "ci95_low" in entry else "")
        ax.annotate(f"{_accuracy(entry['spread'], digits)}{interval}", (x, 1.0), ha="center", va="bottom",
                    fontsize="small")
    ax.set_xticks(range(len(networks)), [show(n).replace(", ", "\n") for n in networks], fontsize="small")
    ax.set(ylim=(0, 1.14), ylabel="mean final validation accuracy over seeds", xlim=(-0.6, len(networks) - 0.4))
    ax.grid(axis="y", alpha=0.3)
    handles, texts = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", ls="", color="0.3", fillstyle=f, markerfacecoloralt="white",
                       markerfacecolor="0.3" if f != "none" else "white") for f in ("full", "bottom", "none")]
    texts += ["every run trained", "some runs diverged", "every run diverged"]
    fig.legend(handles, texts, fontsize="small", loc="outside right center")
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
