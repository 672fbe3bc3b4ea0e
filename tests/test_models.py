"""The MLP built from params: its layers, and what each initializer puts in the kernels."""

from __future__ import annotations

import numpy as np
import pytest

from initstudy.models import build_mlp
from initstudy.params import INITIALIZERS, ModelParams

PARAMS = ModelParams(hidden_units=[32, 16], activation="relu", dropout=0.2, bias_initializer="zeros")


def kernels(initializer: str) -> list[np.ndarray]:
    model = build_mlp((28, 28), 10, PARAMS, initializer)
    return [np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")]


def test_layers_follow_the_params() -> None:
    model = build_mlp((28, 28), 10, PARAMS, "glorot_uniform")
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [k.shape for k in kernels("glorot_uniform")] == [(784, 32), (32, 16), (16, 10)]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert model.layers[1].activation.__name__ == "relu"


def test_no_dropout_layers_when_dropout_is_zero() -> None:
    model = build_mlp((28, 28), 10, PARAMS.model_copy(update={"dropout": 0.0}), "zeros")
    assert "Dropout" not in [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("initializer", INITIALIZERS)
def test_every_initializer_builds_with_zero_biases(initializer: str) -> None:
    model = build_mlp((28, 28), 10, PARAMS, initializer)
    biases = [np.asarray(layer.bias) for layer in model.layers if hasattr(layer, "bias")]
    assert all(not b.any() for b in biases)
    assert all(np.isfinite(k).all() for k in kernels(initializer))


def test_initializers_put_what_they_promise_in_the_kernels() -> None:
    assert all(not k.any() for k in kernels("zeros"))
    assert all((k == 1).all() for k in kernels("ones"))
    assert all(np.array_equal(k, np.eye(*k.shape)) for k in kernels("identity"))
    first = kernels("orthogonal")[0]  # 784 x 32: orthonormal columns
    np.testing.assert_allclose(first.T @ first, np.eye(32), atol=1e-5)


@pytest.mark.parametrize(
    ("initializer", "variance"),
    [("glorot_uniform", 2 / (784 + 32)), ("he_normal", 2 / 784), ("lecun_normal", 1 / 784)],
)
def test_variance_scaling_initializers_have_the_textbook_variance(initializer: str, variance: float) -> None:
    first = kernels(initializer)[0]
    assert first.var() == pytest.approx(variance, rel=0.05)
