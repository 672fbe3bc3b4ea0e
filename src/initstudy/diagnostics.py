"""The textbook criteria of a good initialization, measured on the network at any time.

For one batch of training data: per Dense or Conv2D layer, the mean and std of what it hands
on (its output; where it ends a residual branch, the stream the branch is added to), the
fraction of inactive units (ReLU-like units or channels that never fire on the batch, or tanh
and sigmoid outputs in their flat tails; in a residual mlp, of the activation applied to what
the layer hands on), the norm of the loss gradient with respect to its kernel; at
initialization also a histogram of its weights and the std the variance argument predicts
(initstudy.theory). A network with batch normalization is measured in training mode, as training
sees it: each batch normalized by its own statistics (its moving averages would make it the
identity at initialization), and dropout on; any other with dropout off.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pandas as pd

from initstudy.datasets import Split
from initstudy.initialization import initial_model
from initstudy.models import kernel_layers, layer_outputs, study_loss
from initstudy.params import InitSpec, ModelParams

SATURATING = {"tanh": 0.99, "sigmoid": 0.99}  # |tanh| or |2·sigmoid − 1| beyond this is flat
HISTOGRAM_BINS = 40


def _compiled_probe(probe: keras.Model, training: bool) -> Callable[[np.ndarray, np.ndarray], tuple[list, list]]:
    """One compiled function of the batch: the probe's outputs (in training mode or not) and the
    loss gradient w.r.t. every trainable variable, read from the variables' current values.
    Stateless on both backends: batch norm's moving averages and dropout's seeds, which a
    call in training mode would advance, stay as training left them."""
    loss_fn = study_loss()
    if keras.backend.backend() == "jax":
        import jax

        def run(trainable: list, frozen: list, x: np.ndarray, y: np.ndarray) -> tuple[list, list]:
            def loss(values: list) -> tuple:
                outputs, _ = probe.stateless_call(values, frozen, x, training=training)
                return loss_fn(y, outputs[-1]), outputs

            (_, outputs), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
            return outputs, grads

        compiled = jax.jit(run)
        return lambda x, y: compiled([v.value for v in probe.trainable_variables],
                                     [v.value for v in probe.non_trainable_variables], x, y)
    import tensorflow as tf

    @tf.function
    def run_tf(x: tf.Tensor, y: tf.Tensor) -> tuple[list, list]:
        trainable = [v.value for v in probe.trainable_variables]
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            outputs, _ = probe.stateless_call(trainable, [v.value for v in probe.non_trainable_variables], x,
                                              training=training)
            value = loss_fn(y, outputs[-1])
        return outputs, tape.gradient(value, trainable)

    return run_tf


def _inactive_fraction(outputs: np.ndarray, activation: str) -> float:
    if activation in SATURATING:
        centred = 2 * outputs - 1 if activation == "sigmoid" else outputs
        return float(np.mean(np.abs(centred) > SATURATING[activation]))
    per_unit = outputs.reshape(-1, outputs.shape[-1])  # a conv channel counts as one unit
    return float(np.mean(per_unit.max(axis=0) <= 0))  # units silent on every sample


class LayerProbe:
    """The per-layer measures of `model` (built from `network`) on the batch (x, y), compiled
    once: call it at initialization and again as training goes on, for the weights of that moment."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, network: ModelParams) -> None:
        self.layers = kernel_layers(model)
        self.probe = keras.Model(model.inputs, layer_outputs(model))
        self.run = _compiled_probe(self.probe, training=network.normalization == "batch")
        self.x, self.y, self.network = x, y, network

    def __call__(self) -> pd.DataFrame:
        """A row per kernel layer: output mean and std, inactive fraction, kernel gradient norm."""
        outputs, grads = self.run(self.x, self.y)
        kernels = [np.asarray(g) for v, g in zip(self.probe.trainable_variables, grads) if v.path.endswith("kernel")]
        rows = []
        for index, (layer, out, grad) in enumerate(zip(self.layers, outputs, kernels), start=1):
            out = np.asarray(out)
            active = np.asarray(keras.activations.get(self.network.activation)(out)) if self.network.residual else out
            rows.append({
                "layer": index,
                "units": layer.units if isinstance(layer, keras.layers.Dense) else layer.filters,
                "activation_mean": float(out.mean()),
                "activation_std": float(out.std()),
                "inactive_fraction": _inactive_fraction(active, self.network.activation) if index < len(self.layers)
                else float("nan"),
                "gradient_norm": float(np.linalg.norm(grad)),
            })
        return pd.DataFrame(rows)


def layer_report(model: keras.Model, x: np.ndarray, y: np.ndarray, network: ModelParams) -> pd.DataFrame:
    """The probe's rows at initialization, with each kernel's weight std and, for an mlp,
    the std that the variance argument predicts from the input and the kernels."""
    from initstudy.theory import predicted_std  # SciPy's stats: here, not in every training stage

    report = LayerProbe(model, x, y, network)()
    kernels = [np.asarray(layer.kernel) for layer in kernel_layers(model)]
    report["weight_std"] = [float(k.std()) for k in kernels]
    if all(k.ndim == 2 for k in kernels):
        report["predicted_std"] = predicted_std(
            float(np.mean(np.square(x, dtype=np.float64))), [k.shape[0] for k in kernels],
            [float(np.mean(np.square(k, dtype=np.float64))) for k in kernels], network.activation,
            normalized=network.normalization != "none", branch_layers=network.branch_layers if network.residual else None)
    else:  # pooling and batch norm are outside the argument
        report["predicted_std"] = float("nan")
    return report


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
    split: Split, n_classes: int, networks: dict[str, ModelParams], initializers: dict[str, InitSpec],
    seeds: list[int], batch: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Layer reports of every (network, initializer, seed) on the first `batch` training
    samples, and the weight histograms of each (network, initializer)'s first seed."""
    x, y = split.x_train[:batch], split.y_train[:batch]
    layers, histograms = [], []
    for network, model in networks.items():
        for initializer, spec in initializers.items():
            for seed in seeds:
                built = initial_model(split, n_classes, model, spec, seed)
                report = layer_report(built, x, y, model)
                layers.append(report.assign(network=network, initializer=initializer, seed=seed))
                if seed == seeds[0]:
                    histograms.append(weight_histograms(built).assign(network=network, initializer=initializer))
    first = ["network", "initializer", "seed"]
    layers_table = pd.concat(layers, ignore_index=True)
    histogram_table = pd.concat(histograms, ignore_index=True)
    return (layers_table[first + [c for c in layers_table if c not in first]],
            histogram_table[first[:2] + [c for c in histogram_table if c not in first]])
