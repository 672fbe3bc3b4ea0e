"""Gather the logs of the training runs this workspace made: wall-clock times, CPU, threads.

A `train@…` stage writes logs/<run>.json beside its outputs, not among them (wall-clock
times would make every retrain's output new to DVC). A run restored from the cache was not
trained here and has no log; a later training of the same run replaces it.

    python -m initstudy.timings            # a CSV on stdout, a row per run
    python -m initstudy.timings other/logs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd


def gather(folder: Path) -> pd.DataFrame:
    """A row per log in `folder`: run, cpu, threads, epochs, fit seconds, first and median later epoch."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        log = json.loads(path.read_text())
        seconds = log["epoch_seconds"]
        rows.append({"run": log["run"], "cpu": log["cpu"], "threads": log["threads"], "epochs": len(seconds),
                     "fit_seconds": log["fit_seconds"], "first_epoch_seconds": seconds[0] if seconds else None,
                     "steady_epoch_seconds": statistics.median(seconds[1:]) if len(seconds) > 1 else None})
    return pd.DataFrame(rows, columns=["run", "cpu", "threads", "epochs", "fit_seconds", "first_epoch_seconds",
                                       "steady_epoch_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("logs"))
    gather(parser.parse_args().folder).to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
