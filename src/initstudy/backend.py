"""Choose the Keras backend before Keras is imported."""

from __future__ import annotations

import os
import sys


def use_backend(name: str) -> None:
    """Make `name` the Keras backend of this process; call it before `import keras`.

    On a backend other than TensorFlow, TensorFlow is blocked from import: Keras would
    otherwise import it (several seconds) only to seed it in `set_random_seed`, and no
    TensorFlow op runs in training on JAX.
    """
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(f"Keras already runs on {keras.backend.backend()}, not {name}")
    os.environ["KERAS_BACKEND"] = name
    if name != "tensorflow" and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
