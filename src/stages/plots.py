"""DVC stage `plots`: PNG comparison plots of the trained runs of all initializers, and the
per-epoch table (with colours and zoom flags) that DVC's interactive plots draw."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from initstudy.atomic import write_text
from initstudy.errors import stage_main
from initstudy.params import load_params
from initstudy.plotting import (
    convergence,
    curve_data,
    curves,
    final_accuracy,
    seeds,
    uniform_vs_normal,
)


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("plots"))
    args = parser.parse_args()
    params = load_params()
    dpi = params.plots.dpi
    epochs = pd.read_csv(args.metrics / "epochs.csv")
    runs = pd.read_csv(args.metrics / "runs.csv")
    summary = json.loads((args.metrics / "summary.json").read_text())
    write_text(args.out / "curves.csv", curve_data(epochs).to_csv(index=False))
    for metric in ("val_accuracy", "val_loss"):
        curves(epochs, metric, args.out / f"{metric}.png", dpi)
    final_accuracy(summary, epochs, args.out / "final_val_accuracy.png", dpi)
    seeds(epochs, args.out / "seeds.png", dpi)
    uniform_vs_normal(epochs, list(summary["uniform_vs_normal"]), args.out / "uniform_vs_normal.png", dpi)
    convergence(runs, params.analysis.target_accuracy, args.out / "convergence.png", dpi)


if __name__ == "__main__":
    main()
