"""Train one model for one (initializer, seed) and record what happened.

A run's outputs hold only what its params and seed determine, so that a retrain on any
machine the pins of numerics.py cover reproduces them byte for byte, and DVC's hashes
with them: history.csv, metrics.json, model.keras (saved without its date), probes.csv,
and environment.json (the versions, backend, vector ISA and BLAS kernels that made the
bits). Wall-clock times and the CPU go to a log file outside the outputs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from initstudy.atomic import write_atomically, write_json, write_text
from initstudy.backend import compute_threads
from initstudy.datasets import Split
from initstudy.diagnostics import LayerProbe
from initstudy.initialization import initial_model
from initstudy.models import study_loss
from initstudy.numerics import cpu_model, environment
from initstudy.params import ModelParams, Params, ProbeParams, TrainParams
from initstudy.timings import RunClock


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time in `seconds`, apart from the logged results."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class ProbeLogger(keras.callbacks.Callback):
    """Measures every layer with a LayerProbe before training (epoch 0) and at the end of
    the listed epochs; the probe only reads the weights, so training runs as without it."""

    def __init__(self, probe: LayerProbe, epochs: list[int]) -> None:
        super().__init__()
        self.probe, self.epochs = probe, set(epochs)
        self.rows: list[pd.DataFrame] = []

    def _measure(self, epoch: int) -> None:
        if epoch in self.epochs:
            self.rows.append(self.probe().assign(epoch=epoch))

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._measure(0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._measure(epoch + 1)

    def table(self) -> pd.DataFrame:
        """A row per probed epoch and layer."""
        table = pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(columns=["epoch", "layer"])
        return table[["epoch", *[c for c in table if c != "epoch"]]]


def probe_logger(model: keras.Model, split: Split, network: ModelParams, probes: ProbeParams) -> ProbeLogger:
    """The probe of a run on its first `probes.batch_size` training samples."""
    x, y = split.x_train[: probes.batch_size], split.y_train[: probes.batch_size]
    return ProbeLogger(LayerProbe(model, x, y, network), probes.epochs)


def compile_model(model: keras.Model, train: TrainParams, steps_per_epoch: int) -> None:
    """Compile with one execution per epoch: on TensorFlow, one graph call loops over the
    epoch's steps; on JAX, Keras calls the compiled step once per batch from one Python
    loop, and the callbacks and logs run once per epoch instead of once per step.

    This changes no number the model computes.
    """
    if train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(train.learning_rate, momentum=train.momentum, nesterov=train.nesterov)
    else:
        optimizer = keras.optimizers.Adam(train.learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=study_loss(),
        metrics=["accuracy"],
        steps_per_execution=steps_per_epoch,
    )


# A run has diverged when a loss is not finite, or when its last epoch ends with a loss more
# than RUNAWAY times the larger of its validation loss at initialization and ln(classes),
# the loss of a classifier that has learned nothing. A run that learns lowers its loss, and
# one that learns nothing (zeros) keeps it; one that ends ten times above where it started
# has weights that grew without bound, even while its loss is still finite (Adam at a huge
# learning rate ends near 1e22). A spike the run recovers from is not a divergence.
RUNAWAY = 10.0


def initial_loss(model: keras.Model, split: Split, chunk: int = 2500) -> float:
    """The mean validation loss of the network as it starts, in float64 from inference calls
    on chunks of the validation set. (model.evaluate before fit changed a run's training in
    Keras 3.15 on JAX; plain calls do not.)"""
    logits = np.concatenate([np.asarray(model(split.x_val[i : i + chunk], training=False), dtype=np.float64)
                             for i in range(0, len(split.x_val), chunk)])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(logits)), split.y_val].mean())


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def divergence(history: dict[str, list[float]], initial_val_loss: float, n_classes: int) -> str | None:
    """Why a run counts as diverged (see RUNAWAY), or None if it does not."""
    if not math.isfinite(initial_val_loss):
        return "non-finite validation loss at initialization"
    for epoch, losses in enumerate(zip(history["loss"], history["val_loss"]), 1):
        if not all(math.isfinite(v) for v in losses):
            return f"non-finite loss in epoch {epoch}"
    baseline = max(initial_val_loss, math.log(n_classes))
    final = max(history["loss"][-1], history["val_loss"][-1])
    if final > RUNAWAY * baseline:
        return (f"loss {final:.3g} in the last epoch, over {RUNAWAY:g}× {baseline:.3g} "
                "(the larger of the validation loss at initialization and ln(classes))")
    return None


def run_metrics(history: dict[str, list[float]], initial_val_loss: float, n_classes: int) -> dict[str, Any]:
    """Summary of one run's history; non-finite values become null, so the JSON stays valid."""
    val_accuracy = history["val_accuracy"]
    finite = [v if math.isfinite(v) else -math.inf for v in val_accuracy]
    best = max(range(len(finite)), key=finite.__getitem__)
    reason = divergence(history, initial_val_loss, n_classes)
    return {
        "diverged": reason is not None,
        "diverged_because": reason,
        "epochs_completed": len(val_accuracy),
        "initial_val_loss": _finite(initial_val_loss),
        "final_val_accuracy": _finite(val_accuracy[-1]),
        "best_val_accuracy": _finite(val_accuracy[best]),
        "best_epoch": best + 1,
        "final_val_loss": _finite(history["val_loss"][-1]),
        "final_accuracy": _finite(history["accuracy"][-1]),
        "final_loss": _finite(history["loss"][-1]),
    }


def _renumber_shared_objects(config: Any, ids: dict[int, int]) -> Any:
    """`config` with each `shared_object_id` (Keras writes the object's memory address) replaced
    by its rank of first appearance, which keeps the sharing and drops the address."""
    if isinstance(config, dict):
        return {key: ids.setdefault(value, len(ids) + 1) if key == "shared_object_id"
                else _renumber_shared_objects(value, ids) for key, value in config.items()}
    if isinstance(config, list):
        return [_renumber_shared_objects(value, ids) for value in config]
    return config


def save_model(model: keras.Model, path: Path) -> None:
    """Save `model` as Keras does, less what differs from one save to the next: the date in
    its metadata and zip entries, and the memory addresses that mark shared objects in its
    config. The same weights give the same bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "model.keras"
        previous, tempfile.tempdir = tempfile.tempdir, tmp  # Keras' own scratch folders go here too,
        try:                                                 # and with it, even when saving fails
            model.save(saved)
        finally:
            tempfile.tempdir = previous

        def rewrite(target: Path) -> None:
            with zipfile.ZipFile(saved) as source, zipfile.ZipFile(target, "w") as archive:
                for info in source.infolist():
                    data = source.read(info)
                    if info.filename == "metadata.json":
                        metadata = json.loads(data)
                        metadata.pop("date_saved", None)
                        data = json.dumps(metadata).encode()
                    elif info.filename == "config.json":
                        data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode()
                    archive.writestr(zipfile.ZipInfo(info.filename), data, compress_type=info.compress_type)

        write_atomically(path, rewrite)


def train_run(
    split: Split, n_classes: int, params: Params, network: str, initializer: str, seed: int, out_dir: Path,
    log: Path | None = None, clock: RunClock | None = None,
) -> dict[str, Any]:
    """Train one model, its network and initializer named by their labels in params.networks
    and params.initializers; write history.csv, model.keras, environment.json, probes.csv
    (if params.probes.epochs lists any) and metrics.json (last) to `out_dir`, and the
    wall-clock times and CPU to `log` if given (with the phases of `clock`)."""
    clock = clock or RunClock()
    out_dir.mkdir(parents=True, exist_ok=True)
    architecture = params.networks[network]
    model = initial_model(split, n_classes, architecture, params.initializers[initializer], seed)
    clock.mark("build")
    compile_model(model, params.train, math.ceil(len(split.x_train) / params.train.batch_size))
    clock.mark("compile")
    initial_val_loss = initial_loss(model, split)  # where the divergence test starts from
    clock.mark("initial_loss")
    timer = EpochTimer()
    probes = [probe_logger(model, split, architecture, params.probes)] if params.probes.epochs else []
    history = model.fit(
        split.x_train,
        split.y_train,
        batch_size=params.train.batch_size,
        epochs=params.train.epochs,
        validation_data=(split.x_val, split.y_val),
        verbose=2,
        callbacks=[
            timer,
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.CSVLogger(str(out_dir / "history.csv")),
            *probes,
        ],
    )
    for probe in probes:
        write_text(out_dir / "probes.csv", probe.table().to_csv(index=False))
    clock.mark("fit")
    metrics = {"network": network, "initializer": initializer, "seed": seed}
    metrics |= run_metrics(history.history, initial_val_loss, n_classes)
    save_model(model, out_dir / "model.keras")
    write_json(out_dir / "environment.json", environment(params.train.backend))
    write_json(out_dir / "metrics.json", metrics)
    clock.mark("save")
    if log:
        write_json(log, {"run": out_dir.name, "cpu": cpu_model(), "threads": compute_threads() or os.cpu_count(),
                         "process_seconds": clock.total(), "phase_seconds": clock.seconds,
                         "fit_seconds": sum(timer.seconds), "epoch_seconds": timer.seconds})
    return metrics
