"""The numbers the docs quote from the committed studies are those of the studies' files:
the tables are written from them (initstudy.doctables), and each number quoted in prose is
checked here against the file it comes from."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from initstudy.doctables import PAGES, TABLES, rewritten

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_tables_are_written_from_the_studies_files(page: Path) -> None:
    text = page.read_text()
    assert rewritten(text) == text, "stale tables: run `python -m initstudy.doctables`"


def test_every_table_is_on_a_page() -> None:
    marked = set(re.findall(r"<!-- table: ([\w-]+) -->", "".join(page.read_text() for page in PAGES)))
    assert marked == set(TABLES)


def summary(study: str = "default") -> dict:
    folder = ROOT / "metrics" if study == "default" else ROOT / "studies" / study
    return json.loads((folder / "summary.json").read_text())


def quoted() -> dict[str, str]:
    """The numbers the prose quotes, as it writes them, from the committed files."""
    mlp = summary()["networks"]["mlp"]
    entries = mlp["initializers"]
    ones = entries["ones"]["final_val_accuracy"]
    runs = pd.read_csv(ROOT / "metrics" / "runs.csv")
    seeds = runs[runs.initializer == "ones"].sort_values("seed").final_val_accuracy
    sensible = {n: e for n, e in entries.items() if n not in ("zeros", "ones")}
    tested = [e["vs_reference"] for e in sensible.values() if "vs_reference" in e]
    epochs = {n: e["convergence"].get("epochs_to_target") for n, e in entries.items()}
    spread = summary("residual")["initializer_spread"]
    networks = pd.read_csv(ROOT / "studies" / "residual" / "networks.csv")
    batch_norm = networks[networks.network == "relu_bn_d32"].final_val_accuracy
    phase = summary("phase")["phase_diagram"]
    return {
        "ones": f"{ones['mean']:.2f} ± {ones['std']:.2f}",
        "ones_range": f"{ones['min']:.2f} to {ones['max']:.2f}",
        "ones_seeds": ", ".join(f"{v:.2f}" for v in seeds),
        "ones_p": f"{entries['ones']['vs_reference']['p_value']:.3f}",
        "ones_adjusted": f"{entries['ones']['vs_reference']['p_adjusted']:.3f}",
        "sensible_p": f"{min(t['p_value'] for t in tested):.3f}",
        "sensible_adjusted": f"{min(t['p_adjusted'] for t in tested):.3f}",
        "sensible_range": "–".join(f"{f(e['final_val_accuracy']['mean'] for e in sensible.values()):.3f}"
                                   for f in (min, max)),
        "pairs_p": f"{min(pair['p_value'] for pair in mlp['uniform_vs_normal'].values()):.3f}",
        **{f"epochs_{name}": f"{value:.1f}" for name, value in epochs.items() if value is not None},
        **{f"spread_{network}": f"{entry['spread']:.{3 if entry['spread'] < 0.095 else 2}f}"
           for network, entry in spread.items()},
        "batch_norm_range": f"{batch_norm.min():.2f}–{batch_norm.max():.2f}",
        **{f"agree_{activation}": f"{entry['agreement']:.0%}" for activation, entry in phase.items()},
    }


# (page, a sentence with the numbers it quotes as {names} of quoted())
CLAIMS = [
    ("README.md", "**ones** ends far behind ({ones}, its seeds from {ones_range})"),
    ("README.md", "all reach {sensible_range}"),
    ("README.md", "{epochs_orthogonal} epochs to 0.97 for orthogonal, {epochs_glorot_uniform} for glorot_uniform, "
                  "{epochs_identity} for identity"),
    ("README.md", "minus the worst's is {spread_relu_d32} on the plain network and {spread_relu_bn_d32} with "
                  "batch norm"),
    ("README.md", "with batch norm after every layer, where all train, but only to {batch_norm_range}"),
    ("README.md", "It is {spread_res_d32} on a residual stack"),
    ("README.md", "it is {spread_res_bn_d32} and {spread_res_zero_d32}, the size of the differences between seeds"),
    ("README.md", "in {agree_tanh} (tanh) and {agree_relu} (ReLU) of its cells"),
    ("docs/studies.md", "**ones** ends far behind, {ones} (seeds: {ones_seeds})"),
    ("docs/studies.md", "Its raw p against glorot_uniform is {ones_p}, and with 3 seeds and 15 tests the adjusted p is "
                        "{ones_adjusted}"),
    ("docs/studies.md", "(raw p ≥ {sensible_p}, adjusted p ≥ {sensible_adjusted})"),
    ("docs/studies.md", "Nor does uniform vs normal matter (p ≥ {pairs_p})"),
    ("docs/studies.md", "orthogonal reaches 0.97 validation accuracy in {epochs_orthogonal} epochs, glorot_normal, "
                        "he_normal and he_uniform in {epochs_he_normal}, glorot_uniform and lecun_uniform in "
                        "{epochs_glorot_uniform}, identity takes {epochs_identity}"),
]


@pytest.mark.parametrize("page, claim", CLAIMS)
def test_each_quoted_number_is_the_committed_files(page: str, claim: str) -> None:
    text = " ".join((ROOT / page).read_text().split())  # line breaks as spaces
    assert claim.format(**quoted()) in text


def test_the_prose_claims_that_epochs_tie_where_it_groups_them() -> None:
    values = quoted()
    assert values["epochs_glorot_normal"] == values["epochs_he_normal"] == values["epochs_he_uniform"]
    assert values["epochs_lecun_uniform"] == values["epochs_glorot_uniform"]


def test_the_front_page_gives_the_width_of_dvc_exp_show() -> None:
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--csv"], cwd=ROOT, capture_output=True,
                           text=True, check=True)
    header = next(csv.reader(io.StringIO(shown.stdout)))
    columns = [c for c in header if c not in ("Experiment", "rev", "typ", "Created", "parent")]
    readme = (ROOT / "README.md").read_text()
    assert f"a column per metric, param and dependency, {len(columns)} in all" in readme
    block = readme[readme.index("$ dvc exp show --drop"):]
    width = max(len(line) for line in block[:block.index("```")].splitlines()[1:])
    assert f"That is {width} characters" in readme


# The sections of docs/studies.md, by the start of their heading, and the studies whose files they quote.
SECTIONS = {
    "The default study": ["default"],
    "Activations": ["activations"],
    "When does the initializer matter? Depth": ["depth", "depth-adam"],
    "PyTorch's default": ["pytorch-default", "depth"],
    "Where can a network train?": ["phase"],
    "Does batch norm or a residual connection": ["residual"],
}
# Numbers the prose quotes that no committed file holds, and why.
NOT_IN_THE_FILES = {
    "0.0505": "√(2/784), He's std on 784 inputs, worked out in the text",
    "0.039": "an adjusted p before the numerics pins, as history",
    "0.751": "the first training, on another host, as history",
    "0.630": "the first training, on another host, as history",
}


def numbers(study: str) -> list[float]:
    """Every number of a study's params and summary.json, each run's final and best val
    accuracy, and the mean over seeds of each layer's measures at initialization."""
    folder = ROOT / "metrics" if study == "default" else ROOT / "studies" / study
    found: list[float] = []

    def walk(value: object) -> None:
        if isinstance(value, (dict, list)):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(float(value))

    walk(summary(study))
    walk(yaml.safe_load((ROOT / "params.yaml" if study == "default" else folder / "params.yaml").read_text()))
    runs = pd.read_csv(folder / "runs.csv")[["final_val_accuracy", "best_val_accuracy"]]
    layers = pd.read_csv(folder / "init_layers.csv").groupby(["network", "initializer", "layer"]).mean(
        numeric_only=True)[["activation_std", "predicted_std", "inactive_fraction"]]
    found += [v for frame in (runs, layers) for v in frame.to_numpy().ravel().tolist() if v == v]
    return found


@pytest.mark.parametrize("heading", SECTIONS)
def test_every_accuracy_or_p_the_prose_quotes_is_in_the_studys_files(heading: str) -> None:
    """Each number 0.dd to 0.dddd in the section's prose (tables are written from the files)
    is, to the digits quoted, a number of the study's files, or one of NOT_IN_THE_FILES. A
    number that went stale is caught unless it happens to equal another of the files' (the
    sentences of CLAIMS are checked number by number)."""
    text = (ROOT / "docs" / "studies.md").read_text()
    section = next(part for part in re.split(r"^## ", text, flags=re.M) if part.startswith(heading))
    prose = re.sub(r"<!-- table: .*?<!-- /table -->", "", re.sub(r"^```.*?^```", "", section, flags=re.S | re.M),
                   flags=re.S)
    values = [v for study in SECTIONS[heading] for v in numbers(study)]
    quoted = re.findall(r"(?<![\d.])0\.\d{2,4}(?!\d)", prose)
    assert quoted
    stale = [n for n in quoted if n not in NOT_IN_THE_FILES
             and not any(abs(round(v, len(n) - 2) - float(n)) < 1e-9 for v in values)]
    assert stale == []
