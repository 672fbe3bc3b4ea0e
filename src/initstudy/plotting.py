"""Comparison plots of a study, drawn with matplotlib from the aggregated tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Zoomed panels show the initializers whose final accuracy is within this of the best,
# or whose final loss is within this factor of the lowest.
ZOOM_ACCURACY_WITHIN = 0.05
ZOOM_LOSS_FACTOR = 2.0


def _colors(names: list[str]) -> dict[str, Any]:
    """One colour per initializer, the same in every plot."""
    cmap = plt.get_cmap("tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _save(fig: plt.Figure, path: Path, dpi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def _leaders(final: pd.Series, is_loss: bool) -> list[str]:
    """The initializers whose final value is close to the best one's."""
    if is_loss:
        return list(final[final <= final.min() * ZOOM_LOSS_FACTOR].index)
    return list(final[final >= final.max() - ZOOM_ACCURACY_WITHIN].index)


def curves(epochs: pd.DataFrame, metric: str, path: Path, dpi: int) -> None:
    """Mean of `metric` over seeds per epoch with a ±1 std band; right: the leaders zoomed in."""
    stats = (
        epochs.groupby(["initializer", "epoch"], sort=False)[metric]
        .agg(["mean", "std"])
        .fillna({"std": 0.0})
        .reset_index()
    )
    names = list(dict.fromkeys(epochs.initializer))
    colors = _colors(names)
    is_loss = metric.endswith("loss")
    final = stats.groupby("initializer", sort=False)["mean"].last().dropna()
    panels = [("all initializers", names), ("closest to the best, zoomed", _leaders(final, is_loss))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharex=True)
    label = metric.replace("_", " ")
    for ax, (title, shown) in zip(axes, panels):
        for initializer, g in stats[stats.initializer.isin(shown)].groupby("initializer", sort=False):
            color = colors[initializer]
            ax.plot(g.epoch, g["mean"], label=initializer, color=color)
            ax.fill_between(g.epoch, g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.2)
        if is_loss:
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=label, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{label} per epoch (mean ± std over seeds)")
    fig.tight_layout()
    _save(fig, path, dpi)


def final_accuracy(summary: dict[str, Any], epochs: pd.DataFrame, path: Path, dpi: int) -> None:
    """Final validation accuracy per initializer: mean ± std and a dot per seed; right: zoomed."""
    finals = epochs.sort_values("epoch").groupby(["initializer", "seed"], sort=False).last()
    colors = _colors(list(summary))
    means = pd.Series({n: e["final_val_accuracy"]["mean"] for n, e in summary.items()
                       if "final_val_accuracy" in e}).sort_values()
    names = [n for n in summary if n not in means.index] + list(means.index)
    panels = [("all initializers", names), ("closest to the best, zoomed", _leaders(means, is_loss=False))]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(names) + 1.8),
                             gridspec_kw={"width_ratios": [1, 1]})
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
    fig.tight_layout()
    _save(fig, path, dpi)
