"""The networks built from params: their layers, and what each initializer puts in the kernels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from initstudy.datasets import Split
from initstudy.initialization import initial_model
from initstudy.models import branch_ends, build_model, kernel_layers, layer_outputs, study_loss
from initstudy.params import SPECS, ModelParams, init_spec

PARAMS = ModelParams(hidden_units=[32, 16], activation="relu", dropout=0.2, bias_initializer="zeros")
CNN = PARAMS.model_copy(update={"family": "cnn", "conv_filters": [8, 16], "normalization": "batch"})


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
    model = build("he_normal", PARAMS.model_copy(update={"normalization": "batch", "dropout": 0.0}))
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
    no_bn = build("he_normal", CNN.model_copy(update={"normalization": "none", "dropout": 0.0}))
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


RESIDUAL = ModelParams(hidden_units=[32] * 5, residual=True)


@pytest.mark.parametrize(("update", "blocks", "extra_parameters"), [
    ({}, ["Activation", "Dense", "Add"] * 4, 0),
    ({"branch_layers": 2}, ["Activation", "Dense", "Activation", "Dense", "Add"] * 2, 0),
    ({"normalization": "batch"}, ["BatchNormalization", "Activation", "Dense", "Add"] * 4, 4 * 5 * 32),
    ({"normalization": "layer"}, ["LayerNormalization", "Activation", "Dense", "Add"] * 4, 2 * 5 * 32),
    ({"dropout": 0.1}, ["Activation", "Dense", "Dropout", "Add"] * 4, 0),
])
def test_a_residual_mlp_projects_then_adds_its_branches(update: dict, blocks: list[str],
                                                        extra_parameters: int) -> None:
    """A linear projection, blocks h + f(h) with f = [norm] → (activation → Dense) × branch
    layers, then [norm] → activation → the logits; the same kernels as the plain network of
    these hidden units, and a normalization layer's 2 (layer) or 4 (batch) values per unit."""
    params = RESIDUAL.model_copy(update=update)
    model = build("he_normal", params)
    norm = [blocks[0]] if update.get("normalization") else []
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["InputLayer", "Flatten", "Dense", *blocks, *norm, "Activation", "Dense"]
    assert model.layers[2].activation.__name__ == "linear"  # the projection
    plain = build("he_normal", PARAMS.model_copy(update={"hidden_units": [32] * 5, "dropout": 0.0}))
    assert model.count_params() == plain.count_params() + extra_parameters == 784 * 32 + 32 + 4 * (32 * 32 + 32) + 330 \
        + extra_parameters
    assert [layer.name for layer in branch_ends(model)] == [layer.name for layer in kernel_layers(model)[
        params.branch_layers::params.branch_layers]][:4 // params.branch_layers]


def test_a_zero_initialized_branch_starts_as_the_identity() -> None:
    """branch_scale 0 zeroes each branch's last kernel (and only that one): every block hands on
    its input unchanged, so the network computes what its projection and output layer do."""
    split = Split(np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32), np.zeros(64, int),
                  np.zeros((1, 28, 28, 1), np.float32), np.zeros(1, int))
    params = RESIDUAL.model_copy(update={"branch_layers": 2, "branch_scale": 0.0})
    model = initial_model(split, 10, params, init_spec("he_normal"), seed=0)
    kernels = [np.asarray(layer.kernel) for layer in kernel_layers(model)]
    assert [not k.any() for k in kernels] == [False, False, True, False, True, False]
    streams = keras.Model(model.inputs, layer_outputs(model))([split.x_train])
    projection = np.asarray(streams[0])
    for stream in (streams[2], streams[4]):
        np.testing.assert_array_equal(np.asarray(stream), projection)
    logits = np.maximum(projection, 0) @ kernels[-1]
    np.testing.assert_allclose(np.asarray(model(split.x_train)), logits, rtol=1e-5, atol=1e-5)
    halved = initial_model(split, 10, params.model_copy(update={"branch_scale": 0.5}), init_spec("he_normal"), 0)
    full = initial_model(split, 10, params.model_copy(update={"branch_scale": 1.0}), init_spec("he_normal"), 0)
    for a, b in zip(kernel_layers(halved), kernel_layers(full)):
        scale = 0.5 if a in branch_ends(halved) else 1.0
        np.testing.assert_array_equal(np.asarray(a.kernel), scale * np.asarray(b.kernel))
