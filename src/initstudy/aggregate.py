"""Gather every run of a study into per-initializer statistics and one long per-epoch table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from initstudy.errors import StudyError

SUMMARY_METRICS = ("final_val_accuracy", "best_val_accuracy", "final_val_loss")
STATISTICS = ("mean", "std", "min", "max")
EPOCH_COLUMNS = [
    "initializer", "seed", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"
]


def run_name(initializer: str, seed: int) -> str:
    """The folder of one run under runs/, as DVC's matrix names it (`${key}`)."""
    return f"{initializer}-{seed}"


def load_runs(
    runs_dir: Path, initializers: list[str], seeds: list[int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run's metrics (a row per run) and history (a row per run and epoch, 1-based)."""
    runs, epochs = [], []
    for initializer in initializers:
        for seed in seeds:
            run = runs_dir / run_name(initializer, seed)
            try:
                runs.append(json.loads((run / "metrics.json").read_text()))
                history = pd.read_csv(run / "history.csv")
            except FileNotFoundError as exc:
                raise StudyError(f"{exc.filename} is missing: run `dvc repro` to train it") from None
            epochs.append(history.assign(initializer=initializer, seed=seed, epoch=history.epoch + 1))
    return pd.DataFrame(runs), pd.concat(epochs, ignore_index=True)[EPOCH_COLUMNS]


def summarize(runs: pd.DataFrame, initializers: list[str]) -> dict[str, Any]:
    """Per initializer: mean, std (over seeds), min and max of each summary metric, run counts, rank.

    Diverged runs are counted but kept out of the statistics; an initializer whose runs
    all diverged has no statistics and no rank. Undefined values (std of a single run)
    are left out, so the JSON never holds NaN.
    """
    converged = runs[~runs.diverged.astype(bool)]
    stats = converged.groupby("initializer")[list(SUMMARY_METRICS)].agg(list(STATISTICS))
    counts = runs.groupby("initializer").agg(runs=("seed", "size"), diverged=("diverged", "sum"))
    rank = stats[("final_val_accuracy", "mean")].rank(ascending=False, method="min")
    summary: dict[str, Any] = {}
    for initializer in initializers:
        entry: dict[str, Any] = {
            "runs": int(counts.at[initializer, "runs"]),
            "diverged": int(counts.at[initializer, "diverged"]),
        }
        if initializer in stats.index:
            entry["rank"] = int(rank[initializer])
            for metric in SUMMARY_METRICS:
                values = stats.loc[initializer, metric].items()
                entry[metric] = {k: float(v) for k, v in values if math.isfinite(v)}
        summary[initializer] = entry
    return summary


def _mean_std(stats: dict[str, float]) -> str:
    if "mean" not in stats:
        return "–"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}" if "std" in stats else f"{stats['mean']:.4f}"


def results_table(summary: dict[str, Any]) -> str:
    """The summary as a markdown table, best initializer first."""
    rows = [
        {
            "rank": entry.get("rank", "–"),
            "initializer": name,
            "final val accuracy": _mean_std(entry.get("final_val_accuracy", {})),
            "best val accuracy": _mean_std(entry.get("best_val_accuracy", {})),
            "final val loss": _mean_std(entry.get("final_val_loss", {})),
            "runs": entry["runs"],
            "diverged": entry["diverged"],
        }
        for name, entry in sorted(summary.items(), key=lambda kv: kv[1].get("rank", math.inf))
    ]
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"
