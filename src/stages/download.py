"""DVC stage `download`: fetch the dataset's files and verify their checksums."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.datasets import dataset_checksums
from initstudy.download import fetch_dataset, sources_with_mirror
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to hold the files")
    args = parser.parse_args()
    params = load_params()
    files = dataset_checksums(params.data.name, params.data.checksums)
    sources = sources_with_mirror(params.data.sources[params.data.name])
    fetch_dataset(files, sources, args.out)


if __name__ == "__main__":
    main()
