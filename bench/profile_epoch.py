"""Where an epoch of the project's JAX path goes: `fit()` with and without validation,
against a hand-written jitted epoch (one `lax.scan` over the batches) of the same model;
then the ops XLA ran in `fit()`, from JAX's profiler, by kind, against NumPy's matmul.

Run with `python bench/profile_epoch.py` (about two minutes) after `dvc repro prepare`. If `fit()` without validation
runs as fast as the hand-written loop, Keras adds no overhead worth removing, and what is
left is the arithmetic in XLA and the validation pass; the op table says which arithmetic.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
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


OP_KINDS = {  # XLA's names of the ops it ran, by prefix
    "matrix products and bias sums (YNNPACK fusions, XLA dots)": ("ynn_fusion", "dot"),
    "dropout masks' random bits (JAX's threefry hash: a loop on CPU, its body included)": ("while",),
}
OTHER_OPS = "elementwise fusions and copies (activations, loss, accuracy, Adam)"


def op_seconds(model: keras.Model, split, batch: int, epochs: int) -> tuple[float, Counter, int]:
    """fit()'s wall seconds per epoch under JAX's profiler, the seconds per epoch that XLA's
    threads spent in each kind of op (summed over the threads, so they can exceed the wall),
    and the number of threads that ran ops."""
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            seconds = fit_epochs(model, split, batch, epochs, validate=True)
        (trace,) = Path(folder).rglob("*.xplane.pb")
        profile = jax.profiler.ProfileData.from_file(str(trace))
    kinds: Counter = Counter()
    threads = set()
    for plane in profile.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's threads; the others are Python's
                continue
            ops = sorted((event for event in line.events  # the runtime's own spans hold "::" or a space
                          if "::" not in event.name and " " not in event.name), key=lambda event: event.start_ns)
            end = 0
            for event in ops:
                if event.start_ns < end:  # inside the last op (a loop's body): counted with it
                    continue
                end = event.start_ns + event.duration_ns
                kind = next((k for k, prefixes in OP_KINDS.items() if event.name.startswith(prefixes)), OTHER_OPS)
                kinds[kind] += event.duration_ns / 1e9 / epochs
                threads.add(line.name)
    return sum(seconds) / epochs, kinds, len(threads)


def numpy_rate(batch: int, sizes: list[int]) -> float:
    """GFLOP/s of NumPy's float32 matmul of the first layer (batch × inputs @ inputs × units), in
    this process: one thread, OpenBLAS' pinned kernel, AVX without FMA (as XLA at the AVX cap)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((batch, sizes[0]), dtype=np.float32), rng.random((sizes[0], sizes[1]), dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(100):
            a @ b
        best = min(best, (time.perf_counter() - start) / 100)
    return 2 * batch * sizes[0] * sizes[1] / best / 1e9


def op_table(model: keras.Model, split, batch: int, epochs: int) -> list[str]:
    """The ops of an epoch by kind, and XLA's matmul rate per thread against NumPy's."""
    sizes = [int(np.prod(split.x_train.shape[1:])), *(layer.units for layer in model.layers
                                                       if isinstance(layer, keras.layers.Dense))]
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    gflop = ((6 * weights - 2 * sizes[0] * sizes[1]) * len(split.x_train) + 2 * weights * len(split.x_val)) / 1e9
    wall, kinds, threads = op_seconds(model, split, batch, epochs)
    products = kinds[next(iter(OP_KINDS))]
    lines = [f"Ops XLA ran in {epochs} epochs of fit() with validation under JAX's profiler ({wall:.2f} s wall per "
             f"epoch, the profiler's cost included), seconds per epoch summed over XLA's "
             f"{threads} threads that ran ops:", "", "| ops | thread-seconds per epoch | share |", "|---|---|---|"]
    total = sum(kinds.values())
    lines += [f"| {kind} | {kinds[kind]:.3f} | {kinds[kind] / total:.0%} |" for kind in (*OP_KINDS, OTHER_OPS)]
    lines += [f"| all ops | {total:.3f} | 100% |", "",
              f"Matrix products: {gflop:.1f} GFLOP per epoch in {products:.3f} thread-seconds = "
              f"{gflop / products:.0f} GFLOP/s per thread; NumPy, one thread, AVX without FMA, on the first "
              f"layer's product: {numpy_rate(batch, sizes):.0f} GFLOP/s."]
    return lines


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
    model = initial_model(split, 10, params.networks[params.study.networks[0]], spec, 0)
    compile_model(model, params.train, steps)
    fit_epochs(model, split, batch, 1, validate=True)  # compiled before the profile starts
    print("", *op_table(model, split, batch, 2), sep="\n")


if __name__ == "__main__":
    main()
