"""The textbook criteria of a good initialization, measured on the network before training.

For one batch of training data: per Dense or Conv2D layer, the mean and std of its outputs,
the fraction of inactive units (ReLU-like units or channels that never fire on the batch,
or tanh and sigmoid outputs in their flat tails), the norm of the loss gradient with
respect to its kernel, and a histogram of its initial weights.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from initstudy.datasets import Split
from initstudy.initialization import initial_model
from initstudy.models import kernel_layers, study_loss
from initstudy.params import InitSpec, ModelParams

SATURATING = {"tanh": 0.99, "sigmoid": 0.99}  # |tanh| or |2·sigmoid − 1| beyond this is flat
HISTOGRAM_BINS = 40


def kernel_gradients(model: keras.Model, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Gradient of the mean cross-entropy on (x, y) with respect to each kernel, dropout off."""
    loss_fn = study_loss()
    variables = model.trainable_variables
    if keras.backend.backend() == "jax":
        import jax

        frozen = [v.value for v in model.non_trainable_variables]

        def loss(values: list) -> float:
            predictions, _ = model.stateless_call(values, frozen, x, training=False)
            return loss_fn(y, predictions)

        grads = jax.grad(loss)([v.value for v in variables])
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss_fn(y, model(x, training=False))
        grads = tape.gradient(value, variables)
    return [np.asarray(g) for v, g in zip(variables, grads) if v.path.endswith("kernel")]


def _inactive_fraction(outputs: np.ndarray, activation: str) -> float:
    if activation in SATURATING:
        centred = 2 * outputs - 1 if activation == "sigmoid" else outputs
        return float(np.mean(np.abs(centred) > SATURATING[activation]))
    per_unit = outputs.reshape(-1, outputs.shape[-1])  # a conv channel counts as one unit
    return float(np.mean(per_unit.max(axis=0) <= 0))  # units silent on every sample


def layer_report(model: keras.Model, x: np.ndarray, y: np.ndarray, activation: str) -> pd.DataFrame:
    """A row per kernel layer: output mean and std, inactive fraction, kernel gradient norm, weight std."""
    layers = kernel_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    outputs = [np.asarray(o) for o in probe([x], training=False)]
    gradients = kernel_gradients(model, x, y)
    rows = []
    for index, (layer, out, grad) in enumerate(zip(layers, outputs, gradients), start=1):
        hidden = index < len(layers)
        rows.append({
            "layer": index,
            "units": layer.units if isinstance(layer, keras.layers.Dense) else layer.filters,
            "activation_mean": float(out.mean()),
            "activation_std": float(out.std()),
            "inactive_fraction": _inactive_fraction(out, activation) if hidden else float("nan"),
            "gradient_norm": float(np.linalg.norm(grad)),
            "weight_std": float(np.asarray(layer.kernel).std()),
        })
    return pd.DataFrame(rows)


def weight_histograms(model: keras.Model) -> pd.DataFrame:
    """A row per kernel layer and histogram bin of its initial kernel."""
    rows = []
    for index, layer in enumerate(kernel_layers(model), start=1):
        # a constant kernel (zeros, ones) gets the bin range value ± 0.5 from NumPy
        counts, edges = np.histogram(np.asarray(layer.kernel), bins=HISTOGRAM_BINS)
        rows += [{"layer": index, "bin_low": a, "bin_high": b, "count": int(c)}
                 for a, b, c in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def diagnose_study(
    split: Split, n_classes: int, model: ModelParams, initializers: dict[str, InitSpec],
    seeds: list[int], batch: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Layer reports of every (initializer label, seed) on the first `batch` training samples,
    and the weight histograms of each initializer's first seed."""
    x, y = split.x_train[:batch], split.y_train[:batch]
    layers, histograms = [], []
    for initializer, spec in initializers.items():
        for seed in seeds:
            network = initial_model(split, n_classes, model, spec, seed)
            report = layer_report(network, x, y, model.activation)
            report.insert(0, "seed", seed)
            report.insert(0, "initializer", initializer)
            layers.append(report)
            if seed == seeds[0]:
                histogram = weight_histograms(network)
                histogram.insert(0, "initializer", initializer)
                histograms.append(histogram)
    return pd.concat(layers, ignore_index=True), pd.concat(histograms, ignore_index=True)
