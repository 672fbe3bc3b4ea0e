"""The network at initialization, measured on tiny networks with known answers."""

from __future__ import annotations


import numpy as np
import pytest

from initstudy.datasets import Split
from initstudy.diagnostics import LayerProbe, diagnose_study, layer_report, weight_histograms
from initstudy.initialization import initial_model
from initstudy.models import kernel_layers
from initstudy.params import ModelParams, init_spec

RNG = np.random.default_rng(0)
SPLIT = Split(RNG.random((256, 8, 8, 1), dtype=np.float32), RNG.integers(0, 10, 256),
              RNG.random((16, 8, 8, 1), dtype=np.float32), RNG.integers(0, 10, 16))
RELU = ModelParams(hidden_units=[64, 64, 64], activation="relu", dropout=0.2, bias_initializer="zeros",
                   family="mlp", conv_filters=[], normalization="none")


def network(initializer: str, params: ModelParams = RELU, seed: int = 0):
    return initial_model(SPLIT, 10, params, init_spec(initializer), seed)


def report(initializer: str, params: ModelParams = RELU, seed: int = 0):
    return layer_report(network(initializer, params, seed), SPLIT.x_train, SPLIT.y_train, params)


def test_zeros_give_zero_activations_and_zero_kernel_gradients() -> None:
    rows = report("zeros")
    hidden = rows[rows.layer < 4]
    assert (hidden.activation_mean == 0).all() and (hidden.activation_std == 0).all()
    assert (rows.gradient_norm == 0).all()  # the output kernel too: its inputs are all zero
    assert (hidden.inactive_fraction == 1).all()  # every ReLU is silent
    assert (rows.weight_std == 0).all()


def test_he_keeps_relu_activations_at_scale_and_small_normal_shrinks_them() -> None:
    he = report("he_normal").set_index("layer").activation_std
    small = report("random_normal").set_index("layer").activation_std  # stddev 0.05
    assert 0.5 < he[3] / he[1] < 2.0
    assert small[3] / small[1] < 0.1


def test_ones_saturate_tanh() -> None:
    tanh = RELU.model_copy(update={"activation": "tanh"})
    rows = report("ones", tanh)
    assert (rows[rows.layer < 4].inactive_fraction > 0.99).all()
    assert rows.inactive_fraction.isna().iloc[-1]  # not measured on the softmax output


def test_same_seed_same_network_other_seed_other_network() -> None:
    a, b, c = report("glorot_uniform", seed=1), report("glorot_uniform", seed=1), report("glorot_uniform", seed=2)
    assert a.equals(b) and not a.equals(c)


def test_gradient_norms_are_positive_for_a_random_init() -> None:
    assert (report("glorot_uniform").gradient_norm > 0).all()


def test_weight_histograms_count_every_weight_once() -> None:
    hist = weight_histograms(network("he_uniform"))
    counts = hist.groupby("layer")["count"].sum()
    assert list(counts) == [64 * 64, 64 * 64, 64 * 64, 64 * 10]
    ones = weight_histograms(network("ones"))
    assert ones.groupby("layer")["count"].max().tolist() == [64 * 64, 64 * 64, 64 * 64, 64 * 10]


def test_diagnose_study_covers_every_run() -> None:
    specs = {"zeros": init_spec("zeros"), "he_normal": init_spec("he_normal")}
    tanh = RELU.model_copy(update={"activation": "tanh", "hidden_units": [64]})
    layers, hist = diagnose_study(SPLIT, 10, {"relu": RELU, "tanh": tanh}, specs, [0, 1], batch=32)
    assert len(layers) == 2 * 2 * 4 + 2 * 2 * 2 and set(hist.initializer) == {"zeros", "he_normal"}
    assert set(hist.network) == {"relu", "tanh"}
    assert list(layers.columns[:4]) == ["network", "initializer", "seed", "layer"]


def test_the_variance_argument_predicts_he_on_relu_and_fails_for_ones() -> None:
    """He keeps the ReLU signal's variance; the prediction follows the measurement within the
    sampling noise of a 64-unit layer. `ones` breaks the argument's independence assumption."""
    deep = RELU.model_copy(update={"hidden_units": [64] * 6})
    he = report("he_normal", deep)
    hidden = he[he.layer <= 6]
    np.testing.assert_allclose(hidden.activation_std, hidden.predicted_std, rtol=0.35)
    lecun = report("lecun_normal", deep)
    assert lecun.predicted_std.iloc[5] / lecun.predicted_std.iloc[0] == pytest.approx(0.5 ** 2.5, rel=0.2)
    ones = report("ones", deep)
    assert not np.allclose(ones.activation_std.iloc[1:6], ones.predicted_std.iloc[1:6], rtol=0.5)


def test_the_probe_measures_the_weights_of_the_moment() -> None:
    model = network("he_normal")
    probe = LayerProbe(model, SPLIT.x_train, SPLIT.y_train, RELU)
    before = probe()
    assert before.equals(probe())  # compiled once, the same answer for the same weights
    first = kernel_layers(model)[0]
    first.kernel.assign(np.asarray(first.kernel) * 2)
    after = probe()
    assert after.activation_std.iloc[0] == pytest.approx(2 * before.activation_std.iloc[0], rel=1e-5)


def test_conv_layers_are_measured_per_channel() -> None:
    cnn = RELU.model_copy(update={"family": "cnn", "conv_filters": [4, 8], "hidden_units": [16]})
    rows = report("he_normal", cnn)
    assert rows.units.tolist() == [4, 8, 16, 10]
    assert (rows.gradient_norm > 0).all()
    assert report("zeros", cnn).inactive_fraction.iloc[:3].eq(1).all()  # every channel and unit silent


@pytest.mark.parametrize(("normalization", "each", "median"), [("none", 0.7, 0.3), ("batch", 0.1, 0.05)])
def test_the_residual_recursion_follows_a_measured_deep_residual_network(normalization: str, each: float,
                                                                         median: float) -> None:
    """1 + 16 blocks of width 256, He. The recursion predicts the variance's expectation over
    the weights; a network of finite width draws each block's factor at random, and the errors
    compound over the blocks. Without normalization the measured std of the stream after each
    block stays within a factor e^0.7 (2) of the prediction in each of 3 seeds, and within
    e^0.3 in their median, after variances that double 16 times (65,536×); with batch norm,
    within e^0.1 and e^0.05. The prediction itself (from the drawn kernels): each block
    doubles the stream's variance, or adds 1 to it with normalized branches."""
    params = RELU.model_copy(update={"hidden_units": [256] * 17, "residual": True, "normalization": normalization,
                                     "dropout": 0.0})
    errors = []
    for seed in range(3):
        layers = report("he_normal", params, seed).iloc[:-1]  # the stream, not the 10 logits
        errors.append(np.abs(np.log(layers.activation_std / layers.predicted_std)).to_numpy())
        variance = np.square(layers.predicted_std.to_numpy())
        if normalization == "none":
            np.testing.assert_allclose(variance[1:] / variance[:-1], 2, rtol=0.05)
        else:
            np.testing.assert_allclose(np.diff(variance), 1, rtol=0.05)
    np.testing.assert_array_less(np.max(errors, axis=0), each)
    np.testing.assert_array_less(np.median(errors, axis=0), median)
