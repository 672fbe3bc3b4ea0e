"""DVC stage `aggregate`: per-initializer statistics and analyses, per-run and per-epoch tables,
the headline metrics, and the runs' wall times (kept apart from the results)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from initstudy.aggregate import (
    analyze_runs,
    converged_epochs,
    headline,
    load_runs,
    load_timings,
    results_table,
    summarize,
)
from initstudy.atomic import write_json, write_text
from initstudy.errors import stage_main
from initstudy.params import load_params


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--init", type=Path, default=Path("metrics/init_layers.csv"),
                        help="the diagnose stage's table of the networks at initialization")
    parser.add_argument("--out", type=Path, default=Path("metrics"))
    args = parser.parse_args()
    params = load_params()
    study, analysis = params.study, params.analysis
    runs, epochs = load_runs(args.runs, study.initializers, study.seeds)
    runs = analyze_runs(runs, epochs, analysis.target_accuracy)
    summary = summarize(runs, epochs, study.initializers, analysis.reference, pd.read_csv(args.init))
    write_text(args.out / "epochs.csv", converged_epochs(runs, epochs).to_csv(index=False))
    write_text(args.out / "runs.csv", runs.to_csv(index=False))
    write_text(args.out / "results.md", results_table(summary, analysis.target_accuracy, analysis.reference))
    write_json(args.out / "summary.json", summary)
    write_json(args.out / "headline.json", headline(summary))
    timings = load_timings(args.runs, study.initializers, study.seeds)
    write_text(args.out / "timings.csv", timings.to_csv(index=False))


if __name__ == "__main__":
    main()
