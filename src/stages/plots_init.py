"""DVC stage `plots_init`: PNG plots of the networks at initialization, in <out>/.

`--params` and `--metrics` read another study's files, and `--layers-only` draws only
init_layers.png: a committed study keeps no weight histograms (studies/run.py --redraw)."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.errors import stage_main
from initstudy.params import load_params
from initstudy.plotting import init_layers, init_weights, labelled, plain_names

import pandas as pd  # after initstudy, which pins NumPy's code paths before it loads

# Initializers whose weights are not independent and zero-mean: the variance argument predicts nothing for them.
UNPREDICTED = ("ones", "identity", "constant")


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("plots/init"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--layers-only", action="store_true")
    args = parser.parse_args()
    params = load_params(args.params)
    dpi, names = params.plots.dpi, plain_names(params)
    unpredicted = frozenset(label for label, spec in params.initializers.items() if spec.name in UNPREDICTED)
    init_layers(pd.read_csv(args.metrics / "init_layers.csv"), args.out / "init_layers.png", dpi, names, unpredicted)
    if not args.layers_only:
        init_weights(labelled(pd.read_csv(args.metrics / "init_histograms.csv")), args.out / "init_weights.png", dpi,
                     names)


if __name__ == "__main__":
    main()
