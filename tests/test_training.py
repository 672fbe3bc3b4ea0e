"""Training one run for real: reproducibility, the zeros fact on MNIST, divergence."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import run_stage, write_params
from initstudy.datasets import load_split
from initstudy.params import load_params
from initstudy.training import run_metrics, train_run
from workspace import ROOT, command_env

def small_params(tmp: Path, **train: object):
    return load_params(write_params(tmp, train={"epochs": 2, **train}) / "params.yaml")


def results(run_dir: Path) -> tuple[bytes, ...]:
    """A run's output files, byte for byte (wall-clock times live apart, in its log)."""
    return tuple((run_dir / name).read_bytes() for name in ("metrics.json", "history.csv", "model.keras",
                                                            "environment.json"))


@pytest.fixture(scope="module")
def small_split(mnist_prepared: Path):
    return load_split("mnist", mnist_prepared, train_samples=2000, val_samples=500)


@pytest.mark.training
def test_same_seed_gives_bit_identical_results(small_split, tmp_path: Path) -> None:
    params = small_params(tmp_path)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        train_run(small_split, 10, params, "mlp", "he_normal", seed, tmp_path / name)
    assert results(tmp_path / "a") == results(tmp_path / "b")
    assert results(tmp_path / "c")[0] != results(tmp_path / "a")[0]  # the seed matters


@pytest.mark.training
def test_run_writes_history_model_and_metrics(small_split, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.json"
    metrics = train_run(small_split, 10, small_params(tmp_path), "mlp", "glorot_uniform", 0, tmp_path / "run", log)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history.columns) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history) == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "environment.json", "history.csv", "metrics.json", "model.keras"]
    timing = json.loads(log.read_text())
    assert timing["run"] == "run" and timing["cpu"] and timing["threads"] >= 1
    assert len(timing["epoch_seconds"]) == 2 and min(timing["epoch_seconds"]) > 0
    assert timing["fit_seconds"] == pytest.approx(sum(timing["epoch_seconds"]))
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert environment["backend"] == "jax" and environment["keras"] == keras.__version__
    assert {"numpy", "jax", "jaxlib", "cpu_isa", "blas_kernels", "machine"} <= set(environment)
    assert not {"wall_seconds", "epoch_seconds"} & set(metrics)
    assert metrics["final_val_accuracy"] == pytest.approx(history.val_accuracy.iloc[-1])
    assert metrics["best_val_accuracy"] == pytest.approx(history.val_accuracy.max())
    assert not metrics["diverged"] and metrics["epochs_completed"] == 2
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.count_params() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


@pytest.mark.training
def test_probes_measure_every_layer_at_the_listed_epochs_and_change_no_result(small_split, tmp_path: Path) -> None:
    params = small_params(tmp_path)
    train_run(small_split, 10, params, "mlp", "he_normal", 0, tmp_path / "plain")
    probed = params.model_copy(update={"probes": params.probes.model_copy(update={"epochs": [0, 2], "batch_size": 64})})
    train_run(small_split, 10, probed, "mlp", "he_normal", 0, tmp_path / "probed")
    assert results(tmp_path / "plain") == results(tmp_path / "probed")
    assert not (tmp_path / "plain" / "probes.csv").exists()
    table = pd.read_csv(tmp_path / "probed" / "probes.csv")
    assert table.groupby("epoch").layer.apply(list).to_dict() == {0: [1, 2, 3], 2: [1, 2, 3]}
    assert (table.gradient_norm > 0).all()
    at_init, trained = (table[table.epoch == e].set_index("layer") for e in (0, 2))
    assert not np.allclose(at_init.gradient_norm, trained.gradient_norm)  # the weights of that moment


@pytest.mark.training
def test_zeros_learns_only_the_output_bias_and_predicts_the_commonest_digit(
    mnist_prepared: Path, tmp_path: Path
) -> None:
    """Zero kernels block every gradient but the output bias: the net predicts digit 1 always."""
    split = load_split("mnist", mnist_prepared)
    params = small_params(tmp_path, epochs=1)
    metrics = train_run(split, 10, params, "mlp", "zeros", 0, tmp_path / "zeros")
    assert metrics["final_val_accuracy"] == pytest.approx(1135 / 10000, abs=1e-7)
    model = keras.saving.load_model(tmp_path / "zeros" / "model.keras")
    dense = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert all(not np.asarray(layer.kernel).any() for layer in dense)
    assert all(not np.asarray(layer.bias).any() for layer in dense[:-1])
    assert np.argmax(np.asarray(dense[-1].bias)) == 1


def test_an_infinite_validation_loss_is_a_divergence_too() -> None:
    history = {"loss": [0.5, 0.4], "accuracy": [0.8, 0.9], "val_loss": [0.6, math.inf], "val_accuracy": [0.8, 0.1]}
    metrics = run_metrics(history, 2.3, 10)
    assert metrics["diverged"] is True and metrics["final_val_loss"] is None
    assert metrics["diverged_because"] == "non-finite loss in epoch 2"
    assert metrics["best_val_accuracy"] == 0.8 and metrics["best_epoch"] == 1
    assert run_metrics(history | {"val_loss": [0.6, 0.5]}, 2.3, 10)["diverged"] is False


def _history(losses: list[float]) -> dict[str, list[float]]:
    return {"loss": losses, "val_loss": losses, "accuracy": [0.1] * len(losses), "val_accuracy": [0.1] * len(losses)}


@pytest.mark.parametrize(("losses", "initial", "diverged"), [
    ([3e21, 2.6e22], 2.35, True),     # Adam at a huge learning rate: finite, and 1e22 times the start
    ([24.0], 2.35, True),              # just over 10 × the start
    ([22.0], 2.35, False),             # just under
    ([2.3017, 2.3013], 2.3026, False),  # zeros: learns nothing, stays where it started
    ([457.9, 0.92], 1169.3, False),    # ones: starts huge and falls
    ([5e3, 0.5], 2.3, False),          # a spike it recovers from
    ([30.0], 0.01, True),              # a tiny start: ln(classes) is the floor of the baseline
])
def test_a_runaway_loss_is_a_divergence(losses: list[float], initial: float, diverged: bool) -> None:
    metrics = run_metrics(_history(losses), initial, 10)
    assert metrics["diverged"] is diverged
    assert (metrics["diverged_because"] or "").startswith("loss ") is diverged
    assert metrics["initial_val_loss"] == initial


def test_a_network_that_starts_non_finite_has_diverged() -> None:
    metrics = run_metrics(_history([0.5]), math.nan, 10)
    assert metrics["diverged"] and metrics["diverged_because"] == "non-finite validation loss at initialization"
    assert metrics["initial_val_loss"] is None


@pytest.mark.training
def test_adam_at_a_huge_learning_rate_runs_away_and_is_recorded_as_diverged(small_split, tmp_path: Path) -> None:
    params = small_params(tmp_path, learning_rate=1e6, epochs=2)
    metrics = train_run(small_split, 10, params, "mlp", "he_normal", 0, tmp_path / "run")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert np.isfinite(history.loss).all()  # never NaN: only the runaway test can catch it
    assert metrics["diverged"] is True and metrics["diverged_because"].startswith("loss ")
    assert 2 < metrics["initial_val_loss"] < 3  # about ln(10) for he_normal


@pytest.mark.training
def test_a_diverging_run_is_recorded_as_diverged(small_split, tmp_path: Path) -> None:
    params = small_params(tmp_path, optimizer="sgd", learning_rate=1e38, epochs=5)
    metrics = train_run(small_split, 10, params, "mlp", "ones", 0, tmp_path / "ones")
    assert metrics["diverged"] is True
    assert metrics["epochs_completed"] < 5  # stopped early by TerminateOnNaN
    text = (tmp_path / "ones" / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert not math.isfinite(pd.read_csv(tmp_path / "ones" / "history.csv").loss.iloc[-1])


@pytest.mark.training
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_train_stage_is_reproducible_on_each_backend(mnist_prepared: Path, tmp_path: Path, backend: str) -> None:
    write_params(tmp_path, data={"train_samples": 1000, "val_samples": 300},
                 train={"epochs": 1, "backend": backend})
    cache = tmp_path / "compiled"
    for name in ("a", "b"):
        result = run_stage(tmp_path, "train", "--network", "mlp", "--initializer", "lecun_uniform", "--seed", "3",
                           "--data", str(mnist_prepared), "--out", name, "--log", f"{name}.json", env={"JAX_COMPILATION_CACHE_DIR": str(cache)})
        assert result.returncode == 0, result.stderr
    assert results(tmp_path / "a") == results(tmp_path / "b")
    if backend == "jax":  # the second run loaded the first one's compiled programs
        assert any(cache.iterdir())


@pytest.mark.training
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_probing_a_batch_norm_network_in_training_mode_changes_no_result(mnist_prepared: Path, tmp_path: Path,
                                                                         backend: str) -> None:
    """The probes run batch norm (and so dropout) in training mode; they must still leave the
    moving averages and the dropout seeds alone, on either backend."""
    runs = {}
    for name, epochs in (("plain", []), ("probed", [0, 1])):
        folder = write_params(tmp_path / name, data={"train_samples": 1000, "val_samples": 300},
                              train={"epochs": 2, "backend": backend}, probes={"epochs": epochs, "batch_size": 64},
                              networks={"mlp": {"hidden_units": [32, 16], "dropout": 0.2, "normalization": "batch"}})
        result = run_stage(folder, "train", "--network", "mlp", "--initializer", "he_normal", "--seed", "1",
                           "--data", str(mnist_prepared), "--out", "run", "--log", "log.json")
        assert result.returncode == 0, result.stderr
        runs[name] = folder / "run"
    assert results(runs["plain"]) == results(runs["probed"])
    assert len(pd.read_csv(runs["probed"] / "probes.csv")) == 2 * 3


@pytest.mark.training
def test_a_jax_train_stage_never_imports_tensorflow(mnist_prepared: Path, tmp_path: Path) -> None:
    write_params(tmp_path, data={"train_samples": 500, "val_samples": 100}, train={"epochs": 1})
    # the stage ends in exit_without_teardown: the probe reports the imports from there, then exits as the stage does
    probe = ("import runpy, sys; from initstudy import backend; leave = backend.exit_without_teardown\n"
             "def report():\n"
             "    print('imported:', sorted(m for m in ('tensorflow', 'jax') if sys.modules.get(m)), flush=True)\n"
             "    leave()\n"
             "backend.exit_without_teardown = report; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "src/stages/train.py"), "--network", "mlp", "--initializer", "he_normal",
         "--seed", "0", "--data", str(mnist_prepared), "--out", "run", "--log", "log.json"],
        cwd=tmp_path, env=command_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "imported: ['jax']"


@pytest.mark.training
def test_backends_differ_in_random_streams_only(mnist_prepared: Path, tmp_path: Path) -> None:
    """The backend param really switches backend: same seed, other initial weights, same skill."""
    metrics = {}
    for backend in ("tensorflow", "jax"):
        folder = write_params(tmp_path / backend, data={"train_samples": 2000, "val_samples": 500},
                              train={"epochs": 2, "backend": backend})
        result = run_stage(folder, "train", "--network", "mlp", "--initializer", "he_normal", "--seed", "0",
                           "--data", str(mnist_prepared), "--out", "run", "--log", "log.json")
        assert result.returncode == 0, result.stderr
        metrics[backend] = json.loads((folder / "run" / "metrics.json").read_text())
    assert metrics["tensorflow"] != metrics["jax"]
    assert metrics["tensorflow"]["final_val_accuracy"] == pytest.approx(
        metrics["jax"]["final_val_accuracy"], abs=0.05
    )


@pytest.mark.training
def test_sgd_momentum_and_nesterov_reach_the_optimizer_of_an_lsuv_run(small_split, tmp_path: Path) -> None:
    params = small_params(tmp_path, optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, epochs=1)
    metrics = train_run(small_split, 10, params, "mlp", "lsuv", 0, tmp_path / "run")
    optimizer = keras.saving.load_model(tmp_path / "run" / "model.keras").optimizer
    assert (type(optimizer).__name__, optimizer.momentum, optimizer.nesterov) == ("SGD", 0.9, True)
    assert metrics["initializer"] == "lsuv" and metrics["final_val_accuracy"] > 0.5
