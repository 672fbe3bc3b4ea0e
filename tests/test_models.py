"""The networks built from params: their layers, and what each initializer puts in the kernels."""

from __future__ import annotations

import numpy as np
import pytest

from initstudy.models import build_model, kernel_layers, study_loss
from initstudy.params import SPECS, ModelParams, init_spec

PARAMS = ModelParams(hidden_units=[32, 16], activation="relu", dropout=0.2, bias_initializer="zeros")
CNN = PARAMS.model_copy(update={"family": "cnn", "conv_filters": [8, 16], "batch_norm": True})


def build(initializer: str | dict, params: ModelParams = PARAMS, shape: tuple[int, ...] = (28, 28, 1)):
    return build_model(shape, 10, params, init_spec(initializer))


def kernels(initializer: str | dict, params: ModelParams = PARAMS) -> list[np.ndarray]:
    return [np.asarray(layer.kernel) for layer in kernel_layers(build(initializer, params))]


def test_layers_follow_the_params() -> None:
    model = build("glorot_uniform")
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [k.shape for k in kernels("glorot_uniform")] == [(784, 32), (32, 16), (16, 10)]
    assert model.layers[-1].activation.__name__ == "linear"  # logits: the softmax is in the loss
    assert model.layers[1].activation.__name__ == "relu"


def test_the_loss_keeps_its_gradient_where_a_softmax_saturates() -> None:
    """A confident wrong prediction still teaches: d loss / d logits = softmax − one-hot, not 0."""
    import jax

    logits, label = np.array([[1e4, 0.0, -1e4]], dtype=np.float32), np.array([1])
    assert float(study_loss()(label, logits)) == pytest.approx(1e4)
    np.testing.assert_allclose(jax.grad(lambda z: study_loss()(label, z))(logits), [[1.0, -1.0, 0.0]], atol=1e-6)


def test_an_mlp_may_normalize_each_hidden_layer() -> None:
    model = build("he_normal", PARAMS.model_copy(update={"batch_norm": True, "dropout": 0.0}))
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Flatten", "Dense", "BatchNormalization", "Dense", "BatchNormalization", "Dense"]


def test_no_dropout_layers_when_dropout_is_zero() -> None:
    model = build("zeros", PARAMS.model_copy(update={"dropout": 0.0}))
    assert "Dropout" not in [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize(
    ("initializer", "params"),
    [(name, PARAMS) for name in SPECS] + [(name, CNN) for name in SPECS if name != "identity"],
)
def test_every_initializer_builds_with_zero_biases(initializer: str, params: ModelParams) -> None:
    model = build(initializer, params)
    biases = [np.asarray(layer.bias) for layer in kernel_layers(model)]
    assert all(not b.any() for b in biases)
    assert all(np.isfinite(k).all() for k in kernels(initializer, params))


def test_the_cnn_stacks_conv_blocks_before_the_dense_layers() -> None:
    model = build("he_normal", CNN, (32, 32, 3))
    names = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert names == block * 2 + ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert [k.shape for k in kernels("he_normal", CNN)[:2]] == [(3, 3, 1, 8), (3, 3, 8, 16)]
    assert model.output_shape == (None, 10)
    no_bn = build("he_normal", CNN.model_copy(update={"batch_norm": False, "dropout": 0.0}))
    assert [type(layer).__name__ for layer in no_bn.layers][:3] == ["Conv2D", "MaxPooling2D", "Conv2D"]


def test_initializer_arguments_reach_the_kernels() -> None:
    assert kernels({"name": "random_normal", "stddev": 0.01})[0].std() == pytest.approx(0.01, rel=0.05)
    assert kernels({"name": "random_normal"})[0].std() == pytest.approx(0.05, rel=0.05)
    gain2 = kernels({"name": "orthogonal", "gain": 2.0})[0]
    np.testing.assert_allclose(gain2.T @ gain2, 4 * np.eye(32), atol=1e-4)
    np.testing.assert_array_equal(kernels({"name": "identity", "gain": 3.0})[1], 3 * np.eye(32, 16))
    uniform = kernels({"name": "variance_scaling", "scale": 2.0, "mode": "fan_in", "distribution": "uniform"})[0]
    assert uniform.var() == pytest.approx(2 / 784, rel=0.05) and np.abs(uniform).max() <= np.sqrt(6 / 784)
    truncated = kernels({"name": "truncated_normal", "stddev": 0.1})[0]
    assert np.abs(truncated).max() <= 0.2 + 1e-6  # cut at two standard deviations


def test_the_bias_initializer_is_a_param() -> None:
    params = PARAMS.model_copy(update={"bias_initializer": init_spec({"name": "constant", "value": 0.1})})
    biases = [np.asarray(layer.bias) for layer in kernel_layers(build("he_normal", params))]
    assert all(np.allclose(b, 0.1) for b in biases)


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
