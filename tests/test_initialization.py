"""How a run's network starts: the same weights for the same seed, and LSUV's unit variance."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from initstudy.datasets import Split
from initstudy.errors import StudyError
from initstudy.initialization import initial_model, lsuv, pre_activation_variance
from initstudy.models import kernel_layers
from initstudy.params import ModelParams, init_spec

RNG = np.random.default_rng(0)
SPLIT = Split(RNG.random((600, 12, 12, 3), dtype=np.float32), RNG.integers(0, 10, 600),
              RNG.random((16, 12, 12, 3), dtype=np.float32), RNG.integers(0, 10, 16))
MLP = ModelParams(hidden_units=[64, 32], activation="tanh", dropout=0.2, bias_initializer="zeros",
                  family="mlp", conv_filters=[], normalization="none")
CNN = MLP.model_copy(update={"family": "cnn", "conv_filters": [8, 16], "normalization": "batch", "activation": "relu"})
LSUV = init_spec({"name": "lsuv", "tolerance": 0.02, "max_iterations": 10, "batch_size": 256})


def kernels(model) -> list[np.ndarray]:
    return [np.asarray(layer.kernel) for layer in kernel_layers(model)]


@pytest.mark.parametrize("params", [MLP, CNN], ids=["mlp", "cnn"])
def test_lsuv_gives_every_layer_unit_output_variance_on_its_batch(params: ModelParams) -> None:
    model = initial_model(SPLIT, 10, params, LSUV, seed=0)
    batch = SPLIT.x_train[:LSUV.batch_size]
    for layer in kernel_layers(model):
        assert pre_activation_variance(model, layer, batch) == pytest.approx(1.0, abs=LSUV.tolerance)
    orthogonal = initial_model(SPLIT, 10, params, init_spec("orthogonal"), seed=0)
    assert pre_activation_variance(orthogonal, kernel_layers(orthogonal)[0], batch) != pytest.approx(1, abs=0.1)


@pytest.mark.parametrize("params", [MLP, CNN], ids=["mlp", "cnn"])
def test_lsuv_only_rescales_the_orthogonal_start(params: ModelParams) -> None:
    scaled = kernels(initial_model(SPLIT, 10, params, LSUV, seed=3))
    start = kernels(initial_model(SPLIT, 10, params, init_spec("orthogonal"), seed=3))
    for k, o in zip(scaled, start):
        ratio = k.ravel() @ o.ravel() / (o.ravel() @ o.ravel())
        np.testing.assert_allclose(k, ratio * o, rtol=1e-4, atol=1e-6)
        assert ratio > 0


def test_lsuv_gives_up_after_max_iterations_when_unit_variance_is_out_of_reach() -> None:
    """Biases of std 2 alone give the outputs a variance near 4: rescaling kernels cannot reach 1."""
    params = MLP.model_copy(update={"bias_initializer": init_spec({"name": "random_normal", "stddev": 2.0})})
    model = initial_model(SPLIT, 10, params, LSUV, seed=0)
    first = kernel_layers(model)[0]
    assert pre_activation_variance(model, first, SPLIT.x_train[:256]) > 2
    assert all(np.isfinite(k).all() for k in kernels(model))


def test_lsuv_refuses_a_layer_with_no_output_variance() -> None:
    model = initial_model(SPLIT, 10, MLP, init_spec("zeros"), seed=0)
    with pytest.raises(StudyError, match="LSUV: layer .* has output variance 0.0"):
        lsuv(model, SPLIT.x_train[:64], LSUV)


def test_the_same_seed_builds_the_same_network() -> None:
    for spec in (LSUV, init_spec("he_uniform")):
        a, b = (kernels(initial_model(SPLIT, 10, CNN, spec, seed=7)) for _ in range(2))
        c = kernels(initial_model(SPLIT, 10, CNN, spec, seed=8))
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not np.array_equal(a[0], c[0])


# As a stage draws them: on the backend use_backend sets up (TensorFlow kept out); the collector
# kept off the frameworks' objects, which each clear_session would otherwise walk again.
KERNEL_DIGEST = """
import gc, hashlib, sys, numpy as np
from initstudy.backend import use_backend
use_backend("jax", "AVX")
from initstudy.datasets import Split
from initstudy.initialization import initial_model
from initstudy.models import kernel_layers
from initstudy.params import ModelParams, init_spec
gc.freeze()
x = np.zeros((4, 784), np.float32)
split = Split(x, np.zeros(4, int), x, np.zeros(4, int))
model = ModelParams(hidden_units=[256, 128], activation="relu", dropout=0.2, bias_initializer="zeros",
                    family="mlp", conv_filters=[], normalization="none")
for seed in map(int, sys.argv[1].split(",")):
    network = initial_model(split, 10, model, init_spec("orthogonal"), seed=seed)
    print(hashlib.sha256(b"".join(np.asarray(k.kernel).tobytes() for k in kernel_layers(network))).hexdigest())
"""


def orthogonal_digests(*runs: tuple[str, dict[str, str]]) -> list[list[str]]:
    """For each run (seeds, environment), a process of its own, the runs' processes at once:
    the digests of the orthogonal kernels of the given seeds, drawn one after another in it."""
    processes = [subprocess.Popen([sys.executable, "-c", KERNEL_DIGEST, seeds], env=dict(os.environ, **env),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seeds, env in runs]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    return [stdout.split() for stdout, _ in outputs]


def test_orthogonal_weights_do_not_depend_on_the_thread_count() -> None:
    """The QR behind orthogonal runs in LAPACK; 1 and 4 BLAS threads must draw the same kernels."""
    one, four = orthogonal_digests(("0", {"OPENBLAS_NUM_THREADS": "1"}), ("0", {"OPENBLAS_NUM_THREADS": "4"}))
    assert one == four


def test_orthogonal_weights_drawn_after_others_in_one_process_are_those_of_a_fresh_process() -> None:
    """diagnose draws every network in one process, a train stage one: the same seed must
    give the same kernels either way, run after run."""
    together, again, alone = orthogonal_digests(("0,1,2", {}), ("0,1,2", {}), ("2", {}))
    assert together == again
    assert together[2:] == alone
