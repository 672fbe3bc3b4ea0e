"""Choose the Keras backend before Keras is imported."""

from __future__ import annotations

import os
import sys
from pathlib import Path

COMPILATION_CACHE = Path(".cache/jax")  # in the working directory, the repo's root for DVC stages


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
    if name == "jax":
        _cache_compilations()


def _cache_compilations() -> None:
    """Keep XLA's compiled programs in COMPILATION_CACHE, so that every run after the first
    loads its training step instead of compiling it again (about 2 s per stage). A cached
    program is the same machine code, so results stay bit-identical."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(COMPILATION_CACHE.resolve()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
