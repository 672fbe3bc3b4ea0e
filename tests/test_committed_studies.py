"""The studies committed under studies/: their overrides make valid params, and their results
are those of exactly those params (every run of every network and initializer)."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import yaml

from initstudy.params import parse_params
from workspace import ROOT

spec = importlib.util.spec_from_file_location("run_study", ROOT / "studies" / "run.py")
run_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_study)
STUDIES = sorted(path.stem for path in (ROOT / "studies").glob("*.yaml"))


def test_overrides_merge_mappings_and_replace_the_rest() -> None:
    base = {"train": {"epochs": 20, "optimizer": "adam"}, "study": {"seeds": [0, 1, 2]}}
    merged = run_study.merged(base, {"train": {"epochs": 5}, "study": {"seeds": [7]}})
    assert merged == {"train": {"epochs": 5, "optimizer": "adam"}, "study": {"seeds": [7]}}
    assert base["train"]["epochs"] == 20  # the defaults are left as they were


def used(params: dict) -> dict:
    """The params a study's results depend on: every section, and of the catalogues the
    entries it names (entries added to the catalogues since do not change its runs)."""
    study = params["study"]
    return params | {"networks": {label: params["networks"][label] for label in study["networks"]},
                     "initializers": {label: params["initializers"][label] for label in study["initializers"]}}


@pytest.mark.parametrize("name", STUDIES)
def test_a_committed_study_holds_the_results_of_its_params(name: str) -> None:
    params = parse_params(run_study.study_params(name), f"studies/{name}.yaml")
    folder = ROOT / "studies" / name
    assert used(yaml.safe_load((folder / "params.yaml").read_text())) == used(run_study.study_params(name))
    study = params.study
    networks = pd.read_csv(folder / "networks.csv")
    assert sorted(zip(networks.network, networks.initializer)) == sorted(
        (n, i) for n in study.networks for i in study.initializers)
    assert (networks.runs == len(study.seeds)).all()
    assert sorted(p.stem for p in (folder / "headline").glob("*.json")) == sorted(study.networks)
    for png in [*run_study.PLOTS, "init_layers.png"]:
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
