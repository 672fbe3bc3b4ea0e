"""The networks of the study, built from params with one kernel initializer throughout."""

from __future__ import annotations

import keras

from initstudy.params import InitSpec, ModelParams


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


def build_model(
    input_shape: tuple[int, ...], n_classes: int, params: ModelParams, kernel: InitSpec
) -> keras.Model:
    """The study's network; every Dense and Conv2D kernel gets a fresh initializer from `kernel`.

    mlp: Flatten → (Dense → BatchNormalization if batch_norm → Dropout if dropout) per hidden
    size → Dense with one logit per class (the softmax is in `study_loss`).
    cnn: (Conv2D 3×3 → BatchNormalization if batch_norm → MaxPooling 2×2 → Dropout) per conv
    filter count, then Flatten → (Dense → Dropout) per hidden size → the logits.
    """

    def initializers() -> dict[str, keras.initializers.Initializer]:
        return dict(kernel_initializer=keras_initializer(kernel),
                    bias_initializer=keras_initializer(params.bias_initializer))

    layers: list[keras.layers.Layer] = [keras.Input(input_shape)]
    if params.family == "cnn":
        for filters in params.conv_filters:
            layers.append(keras.layers.Conv2D(filters, 3, padding="same", activation=params.activation,
                                              **initializers()))
            if params.batch_norm:
                layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.MaxPooling2D(2))
            if params.dropout:
                layers.append(keras.layers.Dropout(params.dropout))
    layers.append(keras.layers.Flatten())
    for units in params.hidden_units:
        layers.append(keras.layers.Dense(units, activation=params.activation, **initializers()))
        if params.batch_norm and params.family == "mlp":
            layers.append(keras.layers.BatchNormalization())
        if params.dropout:
            layers.append(keras.layers.Dropout(params.dropout))
    layers.append(keras.layers.Dense(n_classes, **initializers()))
    return keras.Sequential(layers, name=params.family)
