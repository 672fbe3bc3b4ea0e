"""DVC stage `aggregate`: per-initializer statistics, the per-epoch table, a results table."""

from __future__ import annotations

import argparse
from pathlib import Path

from initstudy.aggregate import load_runs, results_table, summarize
from initstudy.atomic import write_json, write_text
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("metrics"))
    args = parser.parse_args()
    study = load_params().study
    runs, epochs = load_runs(args.runs, study.initializers, study.seeds)
    summary = summarize(runs, study.initializers)
    write_text(args.out / "epochs.csv", epochs.to_csv(index=False))
    write_text(args.out / "results.md", results_table(summary))
    write_json(args.out / "summary.json", summary)


if __name__ == "__main__":
    main()
