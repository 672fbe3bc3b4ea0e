"""The CIFAR-10 CNN study end to end through `dvc repro`, on a generated archive in the
exact CIFAR-10 python format served over loopback HTTP (the real one is not on this machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakedata import checksums, write_cifar10
from workspace import Workspace

LABELS = ["he_normal", "lsuv", "normal_001"]


@pytest.mark.training
def test_a_cnn_study_on_cifar10_with_sgd_and_initializer_arguments(tmp_path: Path, serve) -> None:
    mirror = tmp_path / "mirror"
    write_cifar10(mirror, per_batch=40, n_test=40)
    repo = Workspace.create(
        tmp_path / "repo", mirror=serve(mirror),
        data={"name": "cifar10", "checksums": checksums(mirror)},
        study={"networks": ["cnn"], "initializers": LABELS, "seeds": [0]},
        networks={"cnn": {"family": "cnn", "conv_filters": [4], "normalization": "batch", "hidden_units": [16], "dropout": 0.1}},
        train={"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
               "batch_size": 32, "epochs": 2},
        diagnostics={"batch_size": 64},
        analysis={"reference": "he_normal"},
    )
    out = repo.run("dvc", "repro").stdout
    assert "cifar-10-python.tar.gz: ok (sha256 verified)" in out
    assert "LSUV: conv2d output variance 1.0" in out  # printed by train@lsuv-0 and diagnose
    summary = json.loads((repo.path / "metrics/summary.json").read_text())["networks"]["cnn"]["initializers"]
    assert list(summary) == LABELS and all(summary[label]["runs"] == 1 for label in LABELS)
    layers = pd.read_csv(repo.path / "metrics/init_layers.csv")
    assert layers.groupby("initializer").units.apply(list).to_dict() == {label: [4, 16, 10] for label in LABELS}
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]
    params = lock["train@cnn-normal_001-0"]["params"]["params.yaml"]
    assert params["initializers.normal_001"] == {"name": "random_normal", "stddev": 0.01}
    assert params["train"]["nesterov"] is True and params["networks.cnn"]["family"] == "cnn"
    repo.commit("cifar10 cnn")

    repo.set_params(initializers={"normal_001": {"name": "random_normal", "stddev": 0.02}})
    ran = repo.repro()
    assert ran == {"check_params", "train@cnn-normal_001-0", "diagnose", "aggregate", "plots", "plots_init"}
