"""DVC stage `plots`: PNG comparison plots of the trained runs in <out>/comparison/, the
curves per epoch that the report draws interactively as PNGs in <out>/epochs/ (for the docs;
the report shows each curve once), and the per-epoch table (with colours and zoom flags)
that DVC's interactive plots draw. A plot the
study has nothing to show in is left out: the depth plot without two depths, the probes
without probes, the phase diagram without one, uniform vs normal without such a pair, the
spread of the initializers per network without several networks and initializers. With
several networks, a label names the network and the initializer (`net · init`). Every plot
names the networks and initializers in words (`plotting.plain_names`), not by their labels.
When every run diverged, the curves and the per-run plots say so and list the runs' reasons.

`--params` and `--metrics` read another study's files: a committed study's redrawn from its
folder (studies/run.py --redraw)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from initstudy.atomic import write_folder, write_text
from initstudy.errors import stage_main
from initstudy.params import load_params
from initstudy.plotting import (
    SEPARATOR,
    all_diverged,
    convergence,
    curve_data,
    curves,
    depth,
    final_accuracy,
    labelled,
    plain_names,
    phase,
    probes,
    seeds,
    spread,
    uniform_vs_normal,
)

import pandas as pd  # after initstudy, which pins NumPy's code paths before it loads


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("plots"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    dpi, target = params.plots.dpi, params.analysis.target_accuracy
    epochs = pd.read_csv(args.metrics / "epochs.csv")
    runs = pd.read_csv(args.metrics / "runs.csv")
    whole = json.loads((args.metrics / "summary.json").read_text())
    summary = whole["networks"]
    several = len(summary) > 1
    entries = {(f"{network}{SEPARATOR}{name}" if several else name): entry
               for network, per_network in summary.items() for name, entry in per_network["initializers"].items()}
    families = list(dict.fromkeys(f for per_network in summary.values() for f in per_network["uniform_vs_normal"]))
    networks = pd.read_csv(args.metrics / "networks.csv")
    diagrams, spreads = whole.get("phase_diagram", {}), whole.get("initializer_spread", {})
    table = pd.read_csv(args.metrics / "probes.csv")
    first = epochs[epochs.network == next(iter(summary))]
    pairs = [f for f in families if {f"{f}_uniform", f"{f}_normal"} <= set(first.initializer)]
    names = plain_names(params, [*summary, *runs.initializer.unique()])

    diverged = runs.diverged.astype(bool).all()  # nothing to draw but the reasons, rather than empty axes

    def draw_curves(report: Path) -> None:
        for metric in ("val_accuracy", "val_loss"):
            if diverged:
                all_diverged(runs, report / f"{metric}.png", dpi)
            else:
                curves(epochs, metric, report / f"{metric}.png", dpi, names)

    def draw(report: Path) -> None:
        if diverged:
            for name in ("final_val_accuracy", "seeds", "convergence"):
                all_diverged(runs, report / f"{name}.png", dpi)
            return
        final_accuracy({"initializers": entries}, labelled(epochs), report / "final_val_accuracy.png", dpi, names)
        seeds(labelled(epochs), report / "seeds.png", dpi, names)
        convergence(labelled(runs), target, report / "convergence.png", dpi, names)
        if pairs:
            uniform_vs_normal(first, pairs, report / "uniform_vs_normal.png", dpi)
        if networks.depth.nunique() > 1:
            depth(networks, runs, target, report / "depth.png", dpi, names)
        if diagrams:
            phase(networks, diagrams, report / "phase.png", dpi, names)
        if not table.empty:
            probes(table, report / "probes.png", dpi, names)
        if spreads and several and runs.initializer.nunique() > 1:
            spread(runs, spreads, report / "spread.png", dpi, names)

    write_text(args.out / "curves.csv", curve_data(epochs, names).to_csv(index=False))
    write_folder(args.out / "comparison", draw)
    write_folder(args.out / "epochs", draw_curves)

if __name__ == "__main__":
    main()
