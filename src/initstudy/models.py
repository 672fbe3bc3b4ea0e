"""The networks of the study, built from params with one kernel initializer throughout."""

from __future__ import annotations

import keras

from initstudy.params import ModelParams


def build_mlp(
    input_shape: tuple[int, ...], n_classes: int, params: ModelParams, kernel_initializer: str
) -> keras.Model:
    """Flatten → (Dense → Dropout) per hidden size → Dense softmax; one initializer for every kernel."""
    dense = dict(kernel_initializer=kernel_initializer, bias_initializer=params.bias_initializer)
    layers: list[keras.layers.Layer] = [keras.Input(input_shape), keras.layers.Flatten()]
    for units in params.hidden_units:
        layers.append(keras.layers.Dense(units, activation=params.activation, **dense))
        if params.dropout:
            layers.append(keras.layers.Dropout(params.dropout))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", **dense))
    return keras.Sequential(layers, name=f"mlp_{kernel_initializer}")
