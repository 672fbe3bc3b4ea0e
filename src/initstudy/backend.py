"""Choose the Keras backend before Keras is imported."""

from __future__ import annotations

import os
import sys


def use_backend(name: str) -> None:
    """Make `name` the Keras backend of this process; it must precede `import keras`."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(f"Keras already runs on {keras.backend.backend()}, not {name}")
    os.environ["KERAS_BACKEND"] = name
