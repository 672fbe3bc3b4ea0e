"""The networks of the study, built from params with one kernel initializer throughout."""

from __future__ import annotations

from collections.abc import Callable

import keras

from initstudy.params import InitSpec, ModelParams

SKIP = "_plus_skip"  # the Add layer that ends a residual branch is named after its last kernel layer


def keras_initializer(spec: InitSpec) -> keras.initializers.Initializer:
    """The Keras initializer a spec names, with its arguments. LSUV starts from orthogonal;
    torch_default's kernels are U(±1/√fan_in), variance 1/(3·fan_in)."""
    if spec.name == "lsuv":
        return keras.initializers.Orthogonal()
    if spec.name == "torch_default":
        return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")
    return keras.initializers.deserialize({"class_name": spec.name, "config": spec.arguments()})


def study_loss() -> keras.losses.Loss:
    """The loss of every run: cross-entropy computed from the output layer's logits.

    The network ends without a softmax so that the loss and its gradient stay exact when
    a softmax would saturate (as with `ones`), on every backend: given probabilities,
    Keras on JAX takes the log of clipped values, whose gradient is zero once clipped,
    while Keras on TensorFlow recovers the logits behind the softmax.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def kernel_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers whose kernel the initializer sets, input to output."""
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]


def _skips(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """The skip connection after each residual branch, by the name of the branch's last kernel layer."""
    layers = {layer.name: layer for layer in model.layers}
    return {layer.name: layers[layer.name + SKIP] for layer in kernel_layers(model) if layer.name + SKIP in layers}


def branch_ends(model: keras.Model) -> list[keras.layers.Layer]:
    """The last kernel layer of each residual branch, input to output (none in a plain network)."""
    skips = _skips(model)
    return [layer for layer in kernel_layers(model) if layer.name in skips]


def layer_outputs(model: keras.Model) -> list[keras.KerasTensor]:
    """What each kernel layer hands on: its output, or where it ends a residual branch, the
    stream after the skip connection adds the branch to it."""
    skips = _skips(model)
    return [skips[layer.name].output if layer.name in skips else layer.output for layer in kernel_layers(model)]


NORMALIZATIONS = {"batch": keras.layers.BatchNormalization, "layer": keras.layers.LayerNormalization}


def _normalization(kind: str) -> list[keras.layers.Layer]:
    """A new normalization layer of `kind` ("none": no layer), as a list to splice into others."""
    return [NORMALIZATIONS[kind]()] if kind in NORMALIZATIONS else []


def _residual_stack(h: keras.KerasTensor, params: ModelParams,
                    dense: Callable[[int], keras.layers.Dense]) -> keras.KerasTensor:
    """The hidden layers of a residual mlp: a linear projection to the width, then blocks
    h + f(h), f = [normalization] → (activation → Dense) × branch_layers [→ Dropout]
    (pre-activation, He et al. 2016), then [normalization] → activation for the logits."""
    h = dense(params.hidden_units[0])(h)
    units = params.hidden_units[1:]
    for start in range(0, len(units), params.branch_layers):
        branch = h
        for layer in _normalization(params.normalization):
            branch = layer(branch)
        for width in units[start:start + params.branch_layers]:
            last = dense(width)
            branch = last(keras.layers.Activation(params.activation)(branch))
        if params.dropout:
            branch = keras.layers.Dropout(params.dropout)(branch)
        h = keras.layers.Add(name=last.name + SKIP)([h, branch])
    for layer in _normalization(params.normalization):
        h = layer(h)
    return keras.layers.Activation(params.activation)(h)


def build_model(
    input_shape: tuple[int, ...], n_classes: int, params: ModelParams, kernel: InitSpec
) -> keras.Model:
    """The study's network; every Dense and Conv2D kernel gets a fresh initializer from `kernel`.

    mlp: Flatten → (Dense → normalization → Dropout if dropout) per hidden size → Dense with
    one logit per class (the softmax is in `study_loss`); a residual mlp: `_residual_stack`.
    cnn: (Conv2D 3×3 → normalization → MaxPooling 2×2 → Dropout) per conv filter count,
    then Flatten → (Dense → Dropout) per hidden size → the logits.
    """

    def initializers() -> dict[str, keras.initializers.Initializer]:
        return dict(kernel_initializer=keras_initializer(kernel),
                    bias_initializer=keras_initializer(params.bias_initializer))

    if params.residual:
        inputs = keras.Input(input_shape)
        hidden = _residual_stack(keras.layers.Flatten()(inputs), params,
                                 lambda units: keras.layers.Dense(units, **initializers()))
        return keras.Model(inputs, keras.layers.Dense(n_classes, **initializers())(hidden), name="residual_mlp")
    layers: list[keras.layers.Layer] = [keras.Input(input_shape)]
    if params.family == "cnn":
        for filters in params.conv_filters:
            layers.append(keras.layers.Conv2D(filters, 3, padding="same", activation=params.activation,
                                              **initializers()))
            layers += [*_normalization(params.normalization), keras.layers.MaxPooling2D(2)]
            if params.dropout:
                layers.append(keras.layers.Dropout(params.dropout))
    layers.append(keras.layers.Flatten())
    for units in params.hidden_units:
        layers.append(keras.layers.Dense(units, activation=params.activation, **initializers()))
        if params.family == "mlp":
            layers += _normalization(params.normalization)
        if params.dropout:
            layers.append(keras.layers.Dropout(params.dropout))
    layers.append(keras.layers.Dense(n_classes, **initializers()))
    return keras.Sequential(layers, name=params.family)
