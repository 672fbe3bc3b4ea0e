"""DVC stage `plots_init`: PNG plots of the networks at initialization, in <out>/."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.errors import stage_main
from initstudy.params import load_params
from initstudy.plotting import init_layers, init_weights, labelled

import pandas as pd  # after initstudy, which pins NumPy's code paths before it loads


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("plots/init"))
    args = parser.parse_args()
    dpi = load_params().plots.dpi
    init_layers(pd.read_csv(args.metrics / "init_layers.csv"), args.out / "init_layers.png", dpi)
    init_weights(labelled(pd.read_csv(args.metrics / "init_histograms.csv")), args.out / "init_weights.png", dpi)


if __name__ == "__main__":
    main()
