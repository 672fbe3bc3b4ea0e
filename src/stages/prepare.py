"""DVC stage `prepare`: decode the downloaded files once into arrays the other stages memory-map.

Parsing the gzipped IDX files (or the CIFAR-10 archive) costs about a second; loading the
prepared .npy files costs milliseconds, and every training stage loads them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.datasets import prepare_dataset
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="folder of the downloaded files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npy files")
    args = parser.parse_args()
    prepare_dataset(load_params().data.name, args.raw, args.out)


if __name__ == "__main__":
    main()
