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

import math

import numpy as np
from scipy import special, stats

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
    input_mean_square: float, fan_ins: list[int], kernel_mean_squares: list[float], activation: str
) -> list[float]:
    """The std of each Dense layer's outputs that the variance argument predicts from the
    input's mean square and each kernel's fan-in and mean square weight (the last layer
    is linear: the logits)."""
    mean_square, stds = input_mean_square, []
    for index, (fan_in, weight) in enumerate(zip(fan_ins, kernel_mean_squares)):
        variance = fan_in * weight * mean_square
        phi = activation if index < len(fan_ins) - 1 else "linear"
        mean, mean_square = gaussian_moments(phi, variance)
        stds.append(math.sqrt(max(mean_square - mean**2, 0.0)))
    return stds
