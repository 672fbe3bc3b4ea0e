"""DVC stage `diagnose`: activations, gradients and weights of every network at initialization."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.atomic import write_text
from initstudy.backend import exit_without_teardown, use_backend
from initstudy.datasets import DATASETS, load_split
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the dataset files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two tables")
    args = parser.parse_args()
    params = load_params()
    split = load_split(params.data.name, args.data, params.data.train_samples)  # diagnose reads training images only
    use_backend(params.train.backend, params.train.cpu_isa)
    from initstudy.diagnostics import diagnose_study  # imports Keras, so only once the backend is set

    layers, histograms = diagnose_study(
        split, DATASETS[params.data.name].classes,
        {label: params.networks[label] for label in params.study.networks},
        {label: params.initializers[label] for label in params.study.initializers},
        params.study.seeds, params.diagnostics.batch_size,
    )
    write_text(args.out / "init_layers.csv", layers.to_csv(index=False))
    write_text(args.out / "init_histograms.csv", histograms.to_csv(index=False))


if __name__ == "__main__":
    main()
    exit_without_teardown()
