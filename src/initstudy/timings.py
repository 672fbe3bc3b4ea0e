"""The wall-clock times of a training run: recorded into its log, and gathered from the logs.

A `train@…` stage writes logs/<run>.json beside its outputs, not among them (wall-clock
times would make every retrain's output new to DVC). A run restored from the cache was not
trained here and has no log; a later training of the same run replaces it.

    python -m initstudy.timings            # a CSV on stdout, a row per run
    python -m initstudy.timings other/logs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

PHASES = ("start", "data", "framework", "build", "compile", "initial_loss", "fit", "save")


def process_start() -> float:
    """When this process started, in seconds since the epoch (Linux, to 10 ms; elsewhere: now)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return time.time()
    return time.time() - age


class RunClock:
    """Seconds spent in each phase of a run, from the process's start: `mark(phase)` ends one.

    start: the interpreter and the stage's own imports; data: loading the prepared arrays;
    framework: choosing the backend and importing Keras; build: the seeded network (LSUV
    included); compile; initial_loss: the validation loss at initialization; fit: every
    epoch, the first call's tracing included; save: the model and the other outputs.
    """

    def __init__(self) -> None:
        self.began = self.last = process_start()
        self.seconds: dict[str, float] = {}
        self.mark("start")

    def mark(self, phase: str) -> None:
        now = time.time()
        self.seconds[phase] = now - self.last
        self.last = now

    def total(self) -> float:
        """Seconds from the process's start to now."""
        return time.time() - self.began


COLUMNS = ["run", "cpu", "threads", "epochs", "process_seconds", *(f"{phase}_seconds" for phase in PHASES),
           "first_epoch_seconds", "steady_epoch_seconds"]


def gather(folder: Path) -> pd.DataFrame:
    """A row per log in `folder`: run, CPU, threads, epochs, the process's seconds and each
    phase's, the first epoch's and the median of the later ones."""
    import pandas as pd

    rows = []
    for path in sorted(folder.glob("*.json")):
        log = json.loads(path.read_text())
        seconds = log["epoch_seconds"]
        rows.append({"run": log["run"], "cpu": log["cpu"], "threads": log["threads"], "epochs": len(seconds),
                     "process_seconds": log.get("process_seconds"),
                     **{f"{phase}_seconds": log.get("phase_seconds", {}).get(phase) for phase in PHASES},
                     "first_epoch_seconds": seconds[0] if seconds else None,
                     "steady_epoch_seconds": statistics.median(seconds[1:]) if len(seconds) > 1 else None})
    return pd.DataFrame(rows, columns=COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", default=Path("logs"))
    gather(parser.parse_args().folder).to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
