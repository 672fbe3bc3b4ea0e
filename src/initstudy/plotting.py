"""Comparison plots of a study, drawn with matplotlib from the aggregated tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = plt.get_cmap("tab20")


def _save(fig: plt.Figure, path: Path, dpi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def curves(epochs: pd.DataFrame, metric: str, path: Path, dpi: int) -> None:
    """A line per initializer: the mean of `metric` over seeds per epoch, with a ±1 std band."""
    stats = (
        epochs.groupby(["initializer", "epoch"], sort=False)[metric]
        .agg(["mean", "std"])
        .fillna({"std": 0.0})
        .reset_index()
    )
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, (initializer, g) in enumerate(stats.groupby("initializer", sort=False)):
        color = COLORS(i % COLORS.N)
        ax.plot(g.epoch, g["mean"], label=initializer, color=color)
        ax.fill_between(g.epoch, g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.2)
    if metric.endswith("loss"):
        ax.set_yscale("log")
    label = metric.replace("_", " ")
    ax.set(xlabel="epoch", ylabel=label, title=f"{label} per epoch (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path, dpi)


def final_accuracy(summary: dict[str, Any], epochs: pd.DataFrame, path: Path, dpi: int) -> None:
    """Final validation accuracy per initializer: mean ± std bars, and a dot per seed."""
    finals = epochs.sort_values("epoch").groupby(["initializer", "seed"], sort=False).last()
    names = sorted(summary, key=lambda n: summary[n].get("final_val_accuracy", {}).get("mean", 0))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    for y, name in enumerate(names):
        stats = summary[name].get("final_val_accuracy", {})
        if "mean" in stats:
            ax.barh(y, stats["mean"], xerr=stats.get("std", 0.0), color=COLORS(y % COLORS.N),
                    alpha=0.6, capsize=3)
        seeds = finals.loc[name, "val_accuracy"] if name in finals.index else []
        ax.plot(list(seeds), [y] * len(seeds), "k.", markersize=4)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="final validation accuracy", xlim=(0, 1),
           title="Final validation accuracy (bars: mean ± std; dots: seeds)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path, dpi)
