"""DVC stage `train@<network>-<initializer>-<seed>`: train one model, write its history and metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.backend import exit_without_teardown, use_backend
from initstudy.datasets import DATASETS, load_split
from initstudy.errors import StudyError, stage_main
from initstudy.params import load_params
from initstudy.timings import RunClock


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", required=True, help="a label under networks in params.yaml")
    parser.add_argument("--initializer", required=True, help="a label under initializers in params.yaml")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="folder of the dataset files")
    parser.add_argument("--out", type=Path, required=True, help="folder for this run's outputs")
    parser.add_argument("--log", type=Path, required=True,
                        help="JSON file for what is not a result: wall-clock times and the CPU")
    args = parser.parse_args()
    clock = RunClock()  # its first phase, start, ends here
    params = load_params()
    for option, label, catalogue in (("network", args.network, params.networks),
                                     ("initializer", args.initializer, params.initializers)):
        if label not in catalogue:
            raise StudyError(f"--{option} {label}: not a label under {option}s in params.yaml")
    split = load_split(
        params.data.name, args.data, params.data.train_samples, params.data.val_samples
    )
    clock.mark("data")
    use_backend(params.train.backend, params.train.cpu_isa)
    from initstudy.training import train_run  # imports Keras, so only once the backend is set

    clock.mark("framework")
    classes = DATASETS[params.data.name].classes
    train_run(split, classes, params, args.network, args.initializer, args.seed, args.out, args.log, clock)


if __name__ == "__main__":
    main()
    exit_without_teardown()
