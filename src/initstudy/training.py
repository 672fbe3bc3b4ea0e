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
import pandas as pd

from initstudy.atomic import write_atomically, write_json, write_text
from initstudy.backend import compute_threads
from initstudy.datasets import Split
from initstudy.diagnostics import LayerProbe
from initstudy.initialization import initial_model
from initstudy.models import study_loss
from initstudy.numerics import cpu_model, environment
from initstudy.params import Params, ProbeParams, TrainParams


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


def probe_logger(model: keras.Model, split: Split, activation: str, probes: ProbeParams) -> ProbeLogger:
    """The probe of a run on its first `probes.batch_size` training samples."""
    x, y = split.x_train[: probes.batch_size], split.y_train[: probes.batch_size]
    return ProbeLogger(LayerProbe(model, x, y, activation), probes.epochs)


def compile_model(model: keras.Model, train: TrainParams, steps_per_epoch: int) -> None:
    """Compile for speed: one backend call runs a whole epoch of steps.

    This changes no number the model computes; it removes the per-step Python
    overhead that dominates a small model on a CPU.
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


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def run_metrics(history: dict[str, list[float]]) -> dict[str, Any]:
    """Summary of one run's history; non-finite values become null, so the JSON stays valid."""
    val_accuracy = history["val_accuracy"]
    finite = [v if math.isfinite(v) else -math.inf for v in val_accuracy]
    best = max(range(len(finite)), key=finite.__getitem__)
    return {
        "diverged": not all(math.isfinite(v) for v in history["loss"] + history["val_loss"]),
        "epochs_completed": len(val_accuracy),
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
        model.save(saved)

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
    log: Path | None = None,
) -> dict[str, Any]:
    """Train one model, its network and initializer named by their labels in params.networks
    and params.initializers; write history.csv, model.keras, environment.json, probes.csv
    (if params.probes.epochs lists any) and metrics.json (last) to `out_dir`, and the
    wall-clock times and CPU to `log` if given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    architecture = params.networks[network]
    model = initial_model(split, n_classes, architecture, params.initializers[initializer], seed)
    compile_model(model, params.train, math.ceil(len(split.x_train) / params.train.batch_size))
    timer = EpochTimer()
    probes = [probe_logger(model, split, architecture.activation, params.probes)] if params.probes.epochs else []
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
    metrics = {"network": network, "initializer": initializer, "seed": seed}
    metrics |= run_metrics(history.history)
    save_model(model, out_dir / "model.keras")
    write_json(out_dir / "environment.json", environment(params.train.backend))
    if log:
        write_json(log, {"run": out_dir.name, "cpu": cpu_model(), "threads": compute_threads() or os.cpu_count(),
                         "fit_seconds": sum(timer.seconds), "epoch_seconds": timer.seconds})
    write_json(out_dir / "metrics.json", metrics)
    return metrics
