"""The variance argument: what an initializer's scale and an activation do to the signal, layer by layer.

A Dense layer with fan-in n and independent zero-mean weights of mean square w turns
inputs of mean square q into pre-activations of variance v = n·w·q (Glorot & Bengio
2010; He et al. 2015). The activation φ then gives outputs of mean square E[φ(z)²] for
z ~ N(0, v), which is the next layer's q (the mean-field recursion of Poole et al.
2016). For ReLU that is v/2, so n·w = 2 (He) keeps the variance and n·w = 1 (LeCun,
Glorot on equal widths) halves it at every layer; tanh is close to linear for small v,
so n·w = 1 keeps it there, and saturates for large v.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, special, stats

from initstudy.params import ConstantInit, InitSpec, NormalInit, UniformInit, VarianceScalingInit

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "selu": lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "gelu": lambda z: 0.5 * z * (1 + special.erf(z / math.sqrt(2))),
    "linear": lambda z: z,
}


def gaussian_moments(activation: str, variance: float) -> tuple[float, float]:
    """E[φ(z)] and E[φ(z)²] for z ~ N(0, variance), by numerical integration."""
    phi = ACTIVATIONS[activation]
    if variance == 0:
        return float(phi(0.0)), float(phi(0.0)) ** 2
    scale = math.sqrt(variance)  # integrate over x ~ N(0, 1), z = scale·x: the same range at any scale
    return (float(stats.norm.expect(lambda x: phi(scale * x))),
            float(stats.norm.expect(lambda x: phi(scale * x) ** 2)))


def predicted_std(
    input_mean_square: float, fan_ins: list[int], kernel_mean_squares: list[float], activation: str,
    normalized: bool = False, branch_layers: int | None = None,
) -> list[float]:
    """The std of what each Dense layer hands on that the variance argument predicts from the
    input's mean square and each kernel's fan-in and mean square weight (the last layer is
    linear: the logits). `normalized`: the normalization layers (batch norm as in training, or
    layer norm) give the next Dense layer inputs of mean square 1.

    `branch_layers` (a residual mlp, models._residual_stack): the first layer projects the input
    linearly, to a stream of variance q; each block adds a branch of `branch_layers` layers fed
    φ(q) (or φ(1) if normalized), so that q ← q + v(q), and a branch's last layer hands on the
    stream. For ReLU and He kernels v(q) = q without normalization: q doubles with every block;
    with it v = 1 and q grows by one per block, linearly (De & Smith 2020).
    """
    if branch_layers is None:
        mean_square, stds = input_mean_square, []
        for index, (fan_in, weight) in enumerate(zip(fan_ins, kernel_mean_squares)):
            phi = activation if index < len(fan_ins) - 1 else "linear"
            mean, mean_square = gaussian_moments(phi, fan_in * weight * mean_square)
            stds.append(math.sqrt(max(mean_square - mean**2, 0.0)))
            if normalized:
                mean_square = 1.0
        return stds
    stream = fan_ins[0] * kernel_mean_squares[0] * input_mean_square
    stds = [math.sqrt(stream)]
    layers = list(zip(fan_ins[1:], kernel_mean_squares[1:]))
    for start in range(0, len(layers) - 1, branch_layers):
        variance = 1.0 if normalized else stream
        for index, (fan_in, weight) in enumerate(layers[start:start + branch_layers]):
            variance = fan_in * weight * gaussian_moments(activation, variance)[1]
            if index < branch_layers - 1:
                stds.append(math.sqrt(variance))
        stream += variance
        stds.append(math.sqrt(stream))
    fan_in, weight = layers[-1]
    return stds + [math.sqrt(fan_in * weight * gaussian_moments(activation, 1.0 if normalized else stream)[1])]


# Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017, "Deep Information
# Propagation") in a deep net of equal widths, weights N(0, σ_w²/fan_in) and biases N(0, σ_b²):
# the pre-activations' variance q follows the length map q ← σ_w² E[φ(√q z)²] + σ_b², and the
# correlation c of two inputs' pre-activations the correlation map below. χ₁ = σ_w² E[φ'(√q* z)²]
# is the slope of the correlation map at c = 1: below 1 (ordered phase) every correlation tends
# to 1, above 1 (chaotic) to a fixed point c* < 1. Both approach at the rate χ_c, the slope at c*,
# which sets the depth scale ξ_c = −1/ln χ_c; Schoenholz et al. find a network trainable while
# its depth stays below about 6 ξ_c. ξ_c diverges on the critical line χ₁ = 1.
QUADRATURE_NODES = 64  # Gauss–Hermite nodes per dimension; an even count keeps ReLU's kink exact
POSITIVELY_HOMOGENEOUS = ("relu", "linear")  # φ(a z) = a φ(z) for a > 0
CONTRACTING = ("tanh", "elu", "gelu")  # |φ(x)| < |x| for x ≠ 0: without biases, σ_w² ≤ 1 takes q to 0
DERIVATIVES = {
    "relu": lambda z: (z > 0).astype(float),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "sigmoid": lambda z: special.expit(z) * (1 - special.expit(z)),
    "selu": lambda z: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0))),
    "elu": lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))),
    "gelu": lambda z: 0.5 * (1 + special.erf(z / math.sqrt(2))) + z * np.exp(-z**2 / 2) / math.sqrt(2 * math.pi),
    "linear": lambda z: np.ones_like(z),
}


@functools.cache
def _nodes(count: int = QUADRATURE_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with Σ w f(x) ≈ E[f(z)], z ~ N(0, 1) (probabilists' Gauss–Hermite)."""
    x, w = special.roots_hermitenorm(count)
    return x, w / w.sum()


def _expect(f, scale: float) -> float:
    """E[f(scale · z)] for z ~ N(0, 1)."""
    x, w = _nodes()
    return float(np.dot(w, f(scale * x)))


def length_fixed_point(activation: str, weight_var: float, bias_var: float, start: float = 1.0) -> float:
    """q*, the fixed point of the length map reached from q = `start`: 0 where the signal dies
    out, inf where it grows without bound (ReLU with σ_w² > 2, for instance)."""
    phi, q = ACTIVATIONS[activation], start
    if activation in POSITIVELY_HOMOGENEOUS and bias_var == 0:  # q ← (σ_w² E[φ(z)²]) q, exactly
        factor = weight_var * _expect(lambda z: phi(z) ** 2, 1.0)
        return 0.0 if factor < 1 - 1e-12 else math.inf if factor > 1 + 1e-12 else start
    if activation in CONTRACTING and bias_var == 0 and weight_var <= 1:  # q shrinks every layer, to 0
        return 0.0  # (at σ_w² = 1 only as 1/l: iterating would stop at the loop's end, far from it)
    for _ in range(100_000):
        new = weight_var * _expect(lambda z: phi(z) ** 2, math.sqrt(q)) + bias_var
        if new > 1e12:
            return math.inf
        if abs(new - q) <= 1e-13 * max(q, 1e-300) or new < 1e-300:
            return new if new >= 1e-300 else 0.0
        q = new
    return q


def chi_1(activation: str, weight_var: float, bias_var: float) -> float:
    """χ₁ = σ_w² E[φ'(√q* z)²]: the growth of a small perturbation, or of a gradient, per layer."""
    q = length_fixed_point(activation, weight_var, bias_var)
    derivative = DERIVATIVES[activation]
    if math.isinf(q):  # only positively homogeneous φ grow without bound; φ'(√q z) = φ'(z) then
        q = 1.0
    q = max(q, 1e-24)  # a signal that dies out: the limit q → 0
    return weight_var * _expect(lambda z: derivative(z) ** 2, math.sqrt(q))


def _pair_expect(f, g, q: float, c: float) -> float:
    """E[f(u₁) g(u₂)] for a pair of N(0, q) variables with correlation c."""
    x, w = _nodes()
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(max(1 - c * c, 0.0)) * z2)
    return float(np.einsum("i,j,ij->", w, w, f(u1) * g(u2)))


def correlation_map(c: float, activation: str, weight_var: float, bias_var: float, q: float) -> float:
    """The correlation of two inputs' pre-activations one layer on, at variance q."""
    phi = ACTIVATIONS[activation]
    return (weight_var * _pair_expect(phi, phi, q, c) + bias_var) / q


def correlation_fixed_point(activation: str, weight_var: float, bias_var: float) -> float:
    """c*: 1 in the ordered phase (χ₁ ≤ 1), else the stable fixed point below 1."""
    q = length_fixed_point(activation, weight_var, bias_var)
    if chi_1(activation, weight_var, bias_var) <= 1 or not 0 < q < math.inf:
        return 1.0
    gap = lambda c: correlation_map(c, activation, weight_var, bias_var, q) - c  # noqa: E731
    low, high = 0.0, 1 - 1e-9
    if gap(low) <= 0:
        return low
    return optimize.brentq(gap, low, high, xtol=1e-12) if gap(high) < 0 else 1.0


def chi_c(activation: str, weight_var: float, bias_var: float) -> float:
    """χ_c = σ_w² E[φ'(u₁) φ'(u₂)] at c*: the rate at which correlations approach c*."""
    c = correlation_fixed_point(activation, weight_var, bias_var)
    if c == 1.0:
        return chi_1(activation, weight_var, bias_var)
    q = length_fixed_point(activation, weight_var, bias_var)
    derivative = DERIVATIVES[activation]
    return weight_var * _pair_expect(derivative, derivative, q, c)


def depth_scale(activation: str, weight_var: float, bias_var: float) -> float:
    """ξ_c = −1/ln χ_c, infinite on the critical line. Where the length map has no finite,
    nonzero fixed point (ReLU without biases off σ_w² = 2), the signal and the gradients
    scale as χ₁ per layer, and this is their depth scale 1/|ln χ₁|."""
    q = length_fixed_point(activation, weight_var, bias_var)
    rate = chi_c(activation, weight_var, bias_var) if 0 < q < math.inf else chi_1(activation, weight_var, bias_var)
    if rate <= 0:
        return 0.0
    return math.inf if abs(math.log(rate)) < 1e-12 else 1 / abs(math.log(rate))


def critical_weight_variance(activation: str, bias_var: float, low: float = 0.5, high: float = 8.0) -> float:
    """The σ_w² where χ₁ = 1 at this σ_b²: the order-to-chaos line."""
    return optimize.brentq(lambda v: chi_1(activation, v, bias_var) - 1, low, high, xtol=1e-10)


def weight_variance(spec: InitSpec, fan_in: int, fan_out: int) -> float | None:
    """σ_w² of a kernel initializer on a layer: fan-in × the weights' mean square. None where
    the weights are not independent with mean zero (ones, identity, a nonzero mean) or depend
    on data (LSUV), so that the mean-field argument does not apply."""
    truncated = stats.truncnorm(-2, 2).var()  # Keras redraws normal values beyond 2 std
    name = spec.name
    if name == "zeros":
        return 0.0
    if name in ("he_normal", "he_uniform"):
        return 2.0
    if name in ("lecun_normal", "lecun_uniform"):
        return 1.0
    if name in ("glorot_normal", "glorot_uniform"):
        return 2 * fan_in / (fan_in + fan_out)
    if name == "torch_default":
        return 1 / 3
    if isinstance(spec, VarianceScalingInit):
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[spec.mode]
        return spec.scale * fan_in / fan
    if isinstance(spec, NormalInit) and spec.mean == 0:
        return fan_in * spec.stddev**2 * (truncated if name == "truncated_normal" else 1.0)
    if isinstance(spec, UniformInit) and spec.minval == -spec.maxval:
        return fan_in * spec.maxval**2 / 3
    if name == "orthogonal":
        return spec.gain**2 * fan_in / max(fan_in, fan_out)
    if isinstance(spec, ConstantInit) and spec.value == 0:
        return 0.0
    return None


def bias_variance(bias: InitSpec, kernel: InitSpec | None, fan_in: int) -> float | None:
    """σ_b² of a layer's biases: drawn by `bias` (a network's bias_initializer), unless the
    kernel initializer sets them (torch_default: U(±1/√fan_in)). None for biases that are
    not independent with mean zero."""
    if kernel is not None and kernel.name == "torch_default":
        return 1 / (3 * fan_in)
    if bias.name == "zeros" or (isinstance(bias, ConstantInit) and bias.value == 0):
        return 0.0
    if isinstance(bias, NormalInit) and bias.mean == 0 and bias.name == "random_normal":
        return bias.stddev**2
    if isinstance(bias, UniformInit) and bias.minval == -bias.maxval:
        return bias.maxval**2 / 3
    return None
