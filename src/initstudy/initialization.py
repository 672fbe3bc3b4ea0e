"""How a run's network starts: seeded, built, and for LSUV rescaled on data.

LSUV (layer-sequential unit variance, Mishkin & Matas 2015): start from orthogonal
kernels, then, input to output, divide each layer's kernel by the std of its
pre-activation output on a batch of training data until that variance is 1 within a
tolerance (or the iterations run out).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from threadpoolctl import ThreadpoolController

from initstudy.datasets import Split
from initstudy.errors import StudyError
from initstudy.models import branch_ends, build_model, kernel_layers
from initstudy.params import InitSpec, LSUVInit, ModelParams, TorchDefaultInit

# The BLAS libraries loaded with Keras (NumPy's and SciPy's OpenBLAS, whose LAPACK the
# backends' QR calls), found once at import: finding them walks the loaded libraries
# through a ctypes callback, where a signal such as SIGTERM would be lost.
BLAS = ThreadpoolController()


def pre_activation_variance(model: keras.Model, layer: keras.layers.Layer, x: np.ndarray) -> float:
    """Variance of `layer`'s output before its activation, over every value on the batch `x`."""
    activation, layer.activation = layer.activation, keras.activations.linear
    try:
        return float(np.var(np.asarray(keras.Model(model.inputs, layer.output)([x], training=False))))
    finally:
        layer.activation = activation


def lsuv(model: keras.Model, x: np.ndarray, spec: LSUVInit) -> None:
    """Rescale each kernel layer in turn, and log its final pre-activation variance."""
    for layer in kernel_layers(model):
        for _ in range(spec.max_iterations):
            variance = pre_activation_variance(model, layer, x)
            if not math.isfinite(variance) or variance == 0:
                raise StudyError(f"LSUV: layer {layer.name} has output variance {variance} on the batch")
            if abs(variance - 1) < spec.tolerance:
                break
            layer.kernel.assign(np.asarray(layer.kernel) / math.sqrt(variance))
        else:
            variance = pre_activation_variance(model, layer, x)
        print(f"LSUV: {layer.name} output variance {variance:.4f}", flush=True)


def torch_biases(model: keras.Model) -> None:
    """Draw each kernel layer's biases from U(±1/√fan_in), as PyTorch does by default."""
    for layer in kernel_layers(model):
        bound = 1 / math.sqrt(math.prod(layer.kernel.shape[:-1]))
        layer.bias.assign(keras.initializers.RandomUniform(-bound, bound)(layer.bias.shape))


def initial_model(split: Split, n_classes: int, model: ModelParams, spec: InitSpec, seed: int) -> keras.Model:
    """The network exactly as a run starts training: the same seed, calls and weights every time;
    a residual branch's last kernel scaled by `branch_scale` once every kernel is set.

    The kernels are drawn with one BLAS thread: the QR behind `orthogonal` (and LSUV's
    start) runs in LAPACK, whose blocked algorithm rounds differently with each thread
    count, so the same seed would otherwise give other weights on a machine with other cores.
    """
    keras.backend.clear_session()  # layer names restart, as in a fresh process
    keras.utils.set_random_seed(seed)
    with BLAS.limit(limits=1, user_api="blas"):
        network = build_model(split.x_train.shape[1:], n_classes, model, spec)
        if isinstance(spec, TorchDefaultInit):
            torch_biases(network)
    if isinstance(spec, LSUVInit):
        lsuv(network, split.x_train[: spec.batch_size], spec)
    if model.branch_scale != 1:
        for layer in branch_ends(network):
            layer.kernel.assign(np.asarray(layer.kernel) * np.float32(model.branch_scale))
    return network
