"""DVC stage `aggregate`: statistics and analyses per (network, initializer), comparisons across
networks, per-run and per-epoch tables, the headline metrics and the probes taken during
training; a warning when the runs were made in environments that change their bits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from initstudy.aggregate import (
    across_networks,
    analyze_runs,
    converged_epochs,
    environments,
    headline,
    initializer_spread,
    load_runs,
    load_tables,
    phase_diagram,
    results_table,
    study_runs,
    summarize_study,
    variances,
)
from initstudy.atomic import write_json, write_text
from initstudy.errors import stage_main
from initstudy.params import load_params

import pandas as pd  # after initstudy, which pins NumPy's code paths before it loads


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
    every_run = study_runs(study.networks, study.initializers, study.seeds)
    runs, epochs = load_runs(args.runs, every_run)
    for warning in environments(args.runs, every_run):
        print(f"warning: {warning}", file=sys.stderr)
    runs = analyze_runs(runs, epochs, analysis.target_accuracy)
    catalogue = variances({name: params.networks[name] for name in study.networks},
                          {name: params.initializers[name] for name in study.initializers})
    runs = runs.merge(catalogue, on=["network", "initializer"], how="left")
    summary = summarize_study(runs, epochs, study.networks, study.initializers, analysis.reference,
                              pd.read_csv(args.init))
    networks = across_networks(runs, params.networks)
    summary["phase_diagram"] = phase_diagram(networks, analysis.trains_above)
    summary["initializer_spread"] = initializer_spread(runs, analysis.trains_above)
    write_text(args.out / "epochs.csv", converged_epochs(runs, epochs).to_csv(index=False))
    write_text(args.out / "runs.csv", runs.to_csv(index=False))
    write_text(args.out / "networks.csv", networks.to_csv(index=False))
    write_text(args.out / "probes.csv", load_tables(args.runs, every_run, "probes.csv").to_csv(index=False))
    write_text(args.out / "results.md",
               results_table(summary, networks, analysis.target_accuracy, analysis.reference))
    write_json(args.out / "summary.json", summary)
    for network, accuracies in headline(summary).items():
        write_json(args.out / "headline" / f"{network}.json", accuracies)


if __name__ == "__main__":
    main()
