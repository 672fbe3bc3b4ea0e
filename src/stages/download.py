"""DVC stage `download`: fetch the dataset's files and verify their sizes and checksums.

A source that sends more than a file's size, or takes longer than its deadline (see
initstudy.download.deadline_seconds; INITSTUDY_DOWNLOAD_DEADLINE sets it in seconds), is cut
off and the next one tried.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.datasets import dataset_files
from initstudy.download import fetch_dataset, sources_with_mirror
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to hold the files")
    args = parser.parse_args()
    params = load_params()
    files = dataset_files(params.data.name, params.data.checksums)
    sources = sources_with_mirror(params.data.sources[params.data.name])
    fetch_dataset(files, sources, args.out)


if __name__ == "__main__":
    main()
