"""Where an epoch of the project's JAX path goes: `fit()` with and without validation,
against a hand-written jitted epoch (one `lax.scan` over the batches) of the same model.

Run with `python bench/profile_epoch.py` (about a minute) after `dvc repro prepare`. If `fit()` without validation
runs as fast as the hand-written loop, Keras adds no overhead worth removing, and what is
left is the arithmetic in XLA and the validation pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from initstudy.backend import use_backend

use_backend("jax", "AVX")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from initstudy.datasets import load_split  # noqa: E402
from initstudy.initialization import initial_model  # noqa: E402
from initstudy.models import study_loss  # noqa: E402
from initstudy.params import load_params  # noqa: E402
from initstudy.training import EpochTimer, compile_model  # noqa: E402


def fit_epochs(model: keras.Model, split, batch: int, epochs: int, validate: bool) -> list[float]:
    """Seconds per epoch of model.fit, as the train stage calls it."""
    timer = EpochTimer()
    model.fit(split.x_train, split.y_train, batch_size=batch, epochs=epochs, verbose=0,
              validation_data=(split.x_val, split.y_val) if validate else None, callbacks=[timer])
    return timer.seconds


def scan_epochs(model: keras.Model, split, batch: int, epochs: int, learning_rate: float) -> list[float]:
    """Seconds per epoch of a jitted scan of Adam steps over shuffled batches (no validation)."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    loss_fn = study_loss()

    def step(state, data):
        trainable, non_trainable, slots = state
        x, y = data

        def loss(weights):
            out, updated = model.stateless_call(weights, non_trainable, x, training=True)
            return loss_fn(y, out), updated

        (_, non_trainable), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return (trainable, non_trainable, slots), None

    @jax.jit
    def epoch(state, xs, ys):
        return jax.lax.scan(step, state, (xs, ys))[0]

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    steps = len(split.x_train) // batch
    rng, times = np.random.default_rng(0), []
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(split.x_train))[: steps * batch]
        xs = split.x_train[order].reshape(steps, batch, *split.x_train.shape[1:])
        state = jax.block_until_ready(epoch(state, xs, split.y_train[order].reshape(steps, batch)))
        times.append(time.perf_counter() - start)
    return times


def step_calls(model: keras.Model, split, batch: int, epochs: int) -> list[float]:
    """Seconds per "epoch" of the compiled train step called once per batch on one batch that
    stays on the device: the steps' arithmetic and dispatch, with no input pipeline."""
    model.fit(split.x_train[:batch], split.y_train[:batch], batch_size=batch, verbose=0)  # builds every variable
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True, purge_model_variables=False)
    data = (jax.device_put(split.x_train[:batch]), jax.device_put(split.y_train[:batch]))
    steps, times = len(split.x_train) // batch, []
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in range(steps):
            _, state = model.train_function(state, iter([data]))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/prepared/mnist"),
                        help="folder of the prepared MNIST arrays (the `prepare` stage's output)")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    params = load_params()
    split = load_split("mnist", args.data)
    batch, steps = params.train.batch_size, -(-len(split.x_train) // params.train.batch_size)
    spec = params.initializers["glorot_uniform"]
    rows = []
    for label, validate in (("fit(), with validation (the train stage)", True), ("fit(), no validation", False)):
        model = initial_model(split, 10, params.networks[params.study.networks[0]], spec, 0)
        compile_model(model, params.train, steps)
        rows.append((label, fit_epochs(model, split, batch, args.epochs, validate)))
    model = initial_model(split, 10, params.networks[params.study.networks[0]], spec, 0)
    compile_model(model, params.train, 1)
    rows.append(("compiled train step on one resident batch, a call per step", step_calls(model, split, batch, args.epochs)))
    model = initial_model(split, 10, params.networks[params.study.networks[0]], spec, 0)
    rows.append(("jitted lax.scan epoch, no validation",
                 scan_epochs(model, split, batch, args.epochs, params.train.learning_rate)))
    print(f"Epochs of the default model on JAX, {args.epochs} each; steady = median of epochs 2..{args.epochs}:\n")
    print("| path | first epoch (s) | steady epoch (s) |\n|---|---|---|")
    for label, times in rows:
        print(f"| {label} | {times[0]:.2f} | {statistics.median(times[1:]):.2f} |")


if __name__ == "__main__":
    main()
