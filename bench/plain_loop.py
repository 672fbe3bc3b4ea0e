"""The baseline: the study as tutorials train it, a default compile() and fit() on TensorFlow.

Same model, data, batch size and optimizer as the project; one process for all runs,
as in a notebook. Prints one JSON line per run with its per-epoch times.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402

from initstudy.aggregate import study_runs  # noqa: E402
from initstudy.datasets import DATASETS, load_split  # noqa: E402
from initstudy.models import build_model, study_loss  # noqa: E402
from initstudy.params import load_params  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.model.epoch_times.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(args.params)
    split = load_split(params.data.name, args.data, params.data.train_samples, params.data.val_samples)
    for network, initializer, seed in study_runs(params.study.networks, params.study.initializers,
                                                 params.study.seeds):
        keras.utils.set_random_seed(seed)
        model = build_model(split.x_train.shape[1:], DATASETS[params.data.name].classes,
                            params.networks[network], params.initializers[initializer])
        model.epoch_times = []
        model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate),
                      loss=study_loss(), metrics=["accuracy"])
        history = model.fit(split.x_train, split.y_train, batch_size=params.train.batch_size,
                            epochs=params.train.epochs, validation_data=(split.x_val, split.y_val),
                            verbose=0, callbacks=[EpochTimes()])
        print(json.dumps({"network": network, "initializer": initializer, "seed": seed,
                          "epoch_seconds": model.epoch_times,
                          "val_accuracy": history.history["val_accuracy"][-1]}), flush=True)

if __name__ == "__main__":
    main()
