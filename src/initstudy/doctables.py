"""The tables the docs quote from the committed studies, written from the studies' own files
(metrics/ for the default study, studies/<name>/ for the others), so that no number in them
can go stale. A page marks each table it holds:

    <!-- table: depth-sgd -->
    | … the table, as written here … |
    <!-- /table -->

    python -m initstudy.doctables         # rewrites the tables of README.md and docs/studies.md
    python -m initstudy.doctables --check # exit status 1 if one of them differs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from initstudy.atomic import write_text

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "studies.md"]
MARKED = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def folder(study: str) -> Path:
    return ROOT / "metrics" if study == "default" else ROOT / "studies" / study


@cache
def summary(study: str) -> dict[str, Any]:
    return json.loads((folder(study) / "summary.json").read_text())


@cache
def table(study: str, name: str) -> pd.DataFrame:
    return pd.read_csv(folder(study) / f"{name}.csv")


def section(study: str, heading: str) -> str:
    """The table under `heading` in the study's results.md, as aggregate wrote it."""
    text = (folder(study) / "results.md").read_text()
    start = text.index(f"#### {heading}\n" if f"#### {heading}\n" in text else f"### {heading}\n")
    lines = text[start:].splitlines()[1:]
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines + ["#"]) if line.startswith("#"))]
                     if line.startswith("|")) + "\n"


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) + "\n"


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _cell(networks: pd.DataFrame, network: str, initializer: str) -> str:
    row = networks[(networks.network == network) & (networks.initializer == initializer)].iloc[0]
    if row.diverged == row.runs:
        return f"diverged ({row.diverged}/{row.runs})"
    return f"{row.final_val_accuracy:.3f}" + (f", {row.diverged}/{row.runs} diverged" if row.diverged else "")


def grid(study: str, columns: dict[str, str]) -> str:
    """Mean final val accuracy over the seeds, an initializer per row and a network per column."""
    networks = table(study, "networks")
    rows = list(dict.fromkeys(networks.initializer))
    frame = pd.DataFrame({"initializer": rows} | {title: [_cell(networks, network, name) for name in rows]
                                                  for network, title in columns.items()})
    return markdown(frame)


def with_tests(study: str, columns: dict[str, str]) -> str:
    """Mean ± std of the final val accuracy, and Welch's p against the reference with its
    adjusted value, an initializer per row and a network per column."""
    networks = summary(study)["networks"]
    rows = sorted(next(iter(networks.values()))["initializers"])

    def cell(network: str, name: str) -> str:
        entry = networks[network]["initializers"][name]
        stats, test = entry["final_val_accuracy"], entry.get("vs_reference")
        tested = f" (p {p_value(test['p_value'])}, adj. {p_value(test['p_adjusted'])})" if test else ""
        return f"{stats['mean']:.4f} ± {stats['std']:.4f}{tested}"

    return markdown(pd.DataFrame({"initializer": rows} | {title: [cell(network, name) for name in rows]
                                                          for network, title in columns.items()}))


def seeds(study: str, columns: dict[str, str]) -> str:
    """Mean final val accuracy over the seeds, and each seed's."""
    runs, networks = table(study, "runs"), table(study, "networks")
    rows = list(dict.fromkeys(networks.initializer))

    def cell(network: str, name: str) -> str:
        values = runs[(runs.network == network) & (runs.initializer == name)].sort_values("seed").final_val_accuracy
        if values.nunique() == 1:
            return f"{values.iloc[0]:.4f} on every seed"
        return f"{values.mean():.3f} ({', '.join(f'{v:.3f}' for v in values)})"

    return markdown(pd.DataFrame({"initializer": rows} | {title: [cell(network, name) for name in rows]
                                                          for network, title in columns.items()}))


def spread(study: str) -> str:
    """The spread of the initializers per network, with its interval, best, worst and fails."""
    entries = summary(study)["initializer_spread"]
    threshold = next(iter(summary(study).get("phase_diagram", {}).values()), {}).get("trains_above", 0.5)
    return markdown(pd.DataFrame({
        "network": [f"`{network}`" for network in entries],
        "spread (95% CI)": [f"{e['spread']:.3f} ({e['ci95_low']:.3f}–{e['ci95_high']:.3f})"
                            for e in entries.values()],
        "best": [e["best"] for e in entries.values()],
        "worst": [e["worst"] for e in entries.values()],
        f"fail (mean ≤ {threshold:g})": [e["fail"] for e in entries.values()],
    }))


TABLES: dict[str, Callable[[], str]] = {
    "default-results": lambda: section("default", "Final accuracy"),
    "default-convergence": lambda: section("default",
                                           "Convergence, stability, generalization (target val accuracy 0.97)"),
    "default-uniform-vs-normal": lambda: section("default", "Uniform vs normal (final val accuracy)"),
    "activations": lambda: with_tests("activations", {"mlp_small": "ReLU (`mlp_small`)",
                                                      "mlp_small_tanh": "tanh (`mlp_small_tanh`)"}),
    "depth-sgd": lambda: grid("depth", {f"{a}_d{d}": f"{'ReLU' if a == 'relu' else 'tanh'} {d}"
                                        for a in ("relu", "tanh") for d in (2, 8, 16, 32)}),
    "depth-adam": lambda: grid("depth-adam", {f"relu_d{d}": f"Adam, ReLU {d}" for d in (2, 8, 16, 32)}),
    "pytorch-default": lambda: seeds("pytorch-default", {"relu_d32": "ReLU 32 (seeds)", "tanh_d32": "tanh 32 (seeds)"}),
    "residual-spread": lambda: spread("residual"),
    "residual": lambda: grid("residual", {"relu_d32": "plain", "relu_bn_d32": "batch norm", "res_d32": "residual",
                                          "res_bn_d32": "residual + BN", "res_zero_d32": "zero branches"}),
}


def rewritten(text: str) -> str:
    """`text` with every marked table written anew."""
    return MARKED.sub(lambda m: m[1] + TABLES[m["name"]]() + m[4], text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say which pages differ")
    stale = []
    check = parser.parse_args().check
    for page in PAGES:
        text = page.read_text()
        if rewritten(text) != text:
            stale.append(page.relative_to(ROOT))
            if not check:
                write_text(page, rewritten(text))
    if check and stale:
        sys.exit(f"stale tables in {', '.join(map(str, stale))}: run `python -m initstudy.doctables`")


if __name__ == "__main__":
    main()
