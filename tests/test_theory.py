"""The mean-field theory against the published facts and against direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from initstudy import theory
from initstudy.params import init_spec


def test_relu_chi_1_is_half_the_weight_variance() -> None:
    for weight_var in (0.5, 1.0, 2.0, 3.0):
        assert theory.chi_1("relu", weight_var, 0.0) == pytest.approx(weight_var / 2, abs=1e-12)


def test_tanh_with_bias_variance_005_is_critical_near_176() -> None:
    """Schoenholz et al. (2017), Fig. 1: the order-to-chaos line at σ_b² = 0.05."""
    critical = theory.critical_weight_variance("tanh", 0.05)
    assert critical == pytest.approx(1.76, abs=0.01)
    assert theory.chi_1("tanh", critical, 0.05) == pytest.approx(1.0, abs=1e-9)
    assert theory.chi_1("tanh", 1.5, 0.05) < 1 < theory.chi_1("tanh", 2.5, 0.05)


def test_the_depth_scale_grows_without_bound_at_the_critical_point() -> None:
    critical = theory.critical_weight_variance("tanh", 0.05)
    for side in (-1, 1):
        scales = [theory.depth_scale("tanh", critical + side * gap, 0.05) for gap in (0.5, 0.1, 0.02, 0.004)]
        assert all(a < b for a, b in zip(scales, scales[1:])), scales
        assert scales[-1] > 20 * scales[0]
    assert theory.depth_scale("relu", 2.0, 0.0) == math.inf


def test_tanh_without_biases_is_critical_at_weight_variance_one() -> None:
    """σ_b² = 0: q* = 0 for σ_w² ≤ 1 (|tanh x| < |x|), reached only as 1/l at σ_w² = 1, where
    χ₁ = σ_w² tanh'(0)² = 1 and ξ_c is infinite; on either side it is finite, and grows towards 1."""
    assert theory.length_fixed_point("tanh", 1.0, 0.0) == 0.0
    assert theory.chi_1("tanh", 1.0, 0.0) == pytest.approx(1.0, abs=1e-12)
    assert theory.depth_scale("tanh", 1.0, 0.0) == math.inf
    below = [theory.depth_scale("tanh", 1 - gap, 0.0) for gap in (0.1, 0.01)]
    assert below[0] == pytest.approx(-1 / math.log(0.9), rel=1e-9) and below[1] > 9 * below[0]
    assert 0.5 < theory.length_fixed_point("tanh", 2.0, 0.0) < 1  # the chaotic side: a finite q* > 0


def test_the_length_map_fixed_point_solves_the_length_map() -> None:
    q = theory.length_fixed_point("tanh", 2.0, 0.05)
    z = np.random.default_rng(0).standard_normal(2_000_000)
    assert 2.0 * np.mean(np.tanh(math.sqrt(q) * z) ** 2) + 0.05 == pytest.approx(q, rel=2e-3)
    assert theory.length_fixed_point("relu", 1.5, 0.0) == 0.0
    assert theory.length_fixed_point("relu", 2.5, 0.0) == math.inf


def test_correlations_go_to_one_in_the_ordered_phase_and_below_one_in_the_chaotic() -> None:
    assert theory.correlation_fixed_point("tanh", 1.2, 0.05) == 1.0
    c = theory.correlation_fixed_point("tanh", 3.0, 0.05)
    assert 0 < c < 1
    q = theory.length_fixed_point("tanh", 3.0, 0.05)
    assert theory.correlation_map(c, "tanh", 3.0, 0.05, q) == pytest.approx(c, abs=1e-9)
    # a direct Monte Carlo estimate of the map at c*
    rng = np.random.default_rng(1)
    z1, z2 = rng.standard_normal((2, 2_000_000))
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    assert (3.0 * np.mean(np.tanh(u1) * np.tanh(u2)) + 0.05) / q == pytest.approx(c, abs=3e-3)
    # in the ordered phase χ_c is χ₁; in the chaotic one it is below 1 however large χ₁ is
    assert theory.chi_c("tanh", 1.2, 0.05) == theory.chi_1("tanh", 1.2, 0.05)
    assert theory.chi_c("tanh", 3.0, 0.05) < 1 < theory.chi_1("tanh", 3.0, 0.05)


@pytest.mark.parametrize(("spec", "weight_var"), [
    ("he_normal", 2.0), ("he_uniform", 2.0), ("lecun_normal", 1.0), ("glorot_uniform", 1.0), ("zeros", 0.0),
    ({"name": "variance_scaling", "scale": 1.76, "distribution": "untruncated_normal"}, 1.76),
    ({"name": "random_normal", "stddev": 0.05}, 128 * 0.05**2),
    ({"name": "random_uniform", "minval": -0.1, "maxval": 0.1}, 128 * 0.01 / 3),
    ({"name": "orthogonal", "gain": 2.0}, 4.0), ("torch_default", 1 / 3),
    ("ones", None), ("identity", None), ("lsuv", None), ({"name": "random_normal", "mean": 0.1}, None),
])
def test_the_weight_variance_of_a_catalogue_entry(spec, weight_var) -> None:
    """σ_w² = fan-in × the weights' mean square, on a square 128 × 128 layer; None where the
    weights are not independent with mean zero."""
    got = theory.weight_variance(init_spec(spec), 128, 128)
    assert got == (None if weight_var is None else pytest.approx(weight_var, rel=1e-6))


def test_the_weight_variance_matches_keras_draws() -> None:
    import keras

    for name in ("he_normal", "glorot_uniform", "lecun_uniform", "truncated_normal", "torch_default",
                 "random_uniform"):
        spec = init_spec(name)
        from initstudy.models import keras_initializer

        weights = np.asarray(keras_initializer(spec)((512, 512)))
        assert 512 * np.mean(weights**2) == pytest.approx(theory.weight_variance(spec, 512, 512), rel=0.02), name


def test_the_bias_variance_of_a_catalogue_entry() -> None:
    assert theory.bias_variance(init_spec("zeros"), None, 128) == 0.0
    assert theory.bias_variance(init_spec({"name": "random_normal", "stddev": 0.2}), None, 128) == pytest.approx(0.04)
    assert theory.bias_variance(init_spec("zeros"), init_spec("torch_default"), 128) == pytest.approx(1 / 384)
    assert theory.bias_variance(init_spec("ones"), None, 128) is None


def test_the_residual_recursion_adds_each_branch_to_the_stream() -> None:
    """He kernels on ReLU: a branch hands on v(q) = q, so the stream's variance doubles with every
    block (2 after the projection of a unit input, then 4, 8, …); normalized branches add
    v(1) = 1 each, linear growth; zeroed branches add nothing. The logits' variance is the
    stream's, as the output layer is He too."""
    width, he, blocks = 128, 2 / 128, 16
    kernels = [width] * (blocks + 2)

    def variances(**kwargs) -> np.ndarray:
        return np.square(theory.predicted_std(1.0, kernels, [he] * (blocks + 2), "relu", **kwargs))

    np.testing.assert_allclose(variances(branch_layers=1), [2.0 ** (b + 1) for b in range(blocks + 1)] + [2.0**17],
                               rtol=1e-9)
    np.testing.assert_allclose(variances(branch_layers=1, normalized=True),
                               [2.0 + b for b in range(blocks + 1)] + [1.0], rtol=1e-9)
    # 8 blocks of 2 layers, n·w = 4 then 1: the inner layer hands on 4·q/2 = 2q, the second
    # layer 1·2q/2 = q (fed the stream instead, it would give q/2), so the stream doubles
    inner_outer = [he] + [2 * he, he / 2] * (blocks // 2) + [he]
    two = np.square(theory.predicted_std(1.0, kernels, inner_outer, "relu", branch_layers=2))
    np.testing.assert_allclose(two[2:-1:2], [2.0 ** (b + 2) for b in range(blocks // 2)], rtol=1e-9)
    np.testing.assert_allclose(two[1:-1:2], [2.0 ** (b + 2) for b in range(blocks // 2)], rtol=1e-9)
    zeroed = np.square(theory.predicted_std(1.0, kernels, [he] + [0.0] * blocks + [he], "relu", branch_layers=1))
    np.testing.assert_allclose(zeroed, [2.0] * (blocks + 1) + [2.0], rtol=1e-9)
