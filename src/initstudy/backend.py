"""Choose the Keras backend before Keras is imported, with its vector ISA, thread count and compilation cache."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from initstudy.errors import StudyError
from initstudy.numerics import pin_isa

THREADS_ENV = "INITSTUDY_THREADS"


def use_backend(name: str, isa: str) -> None:
    """Make `name` the Keras backend of this process, its compiled code capped at vector ISA
    `isa` (see numerics.py); call it before `import keras`.

    On a backend other than TensorFlow, TensorFlow is blocked from import: Keras would
    otherwise import it (several seconds) only to seed it in `set_random_seed`, and no
    TensorFlow op runs in training on JAX. matplotlib is blocked too, unless already
    loaded: Keras imports pyplot (0.7 s) for an image-gallery helper no stage calls.
    """
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(f"Keras already runs on {keras.backend.backend()}, not {name}")
    threads = compute_threads()
    pin_isa(isa)
    os.environ["KERAS_BACKEND"] = name
    if name != "tensorflow" and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    if "matplotlib" not in sys.modules:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]
    if name == "jax":
        _cache_compilations()
        if threads:
            _size_xla_pool(threads)
    elif name == "tensorflow" and threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def compute_threads() -> int | None:
    """The number of compute threads asked for in INITSTUDY_THREADS; None: all CPUs."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise StudyError(f"{THREADS_ENV}={value!r}: expected a whole number of threads, at least 1")
    return int(value)


def _size_xla_pool(threads: int) -> None:
    """Start XLA's CPU client with a pool of `threads` threads.

    XLA sizes that pool by the CPUs the starting thread may run on, and has no setting of
    its own, so the CPU mask is narrowed while the client starts; then every thread of the
    process gets the whole mask back: the pool has `threads` threads and is pinned to no CPU.
    """
    if not hasattr(os, "sched_setaffinity"):
        warnings.warn(f"{THREADS_ENV} is ignored: this system cannot narrow a process's CPUs", stacklevel=2)
        return
    allowed = os.sched_getaffinity(0)
    if threads >= len(allowed):
        return
    os.sched_setaffinity(0, sorted(allowed)[:threads])
    try:
        import jax

        jax.devices("cpu")
    finally:
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that has ended since
                os.sched_setaffinity(int(task), allowed)


def compilation_cache() -> Path:
    """Where XLA's compiled programs are kept: JAX_COMPILATION_CACHE_DIR, else the user's cache.

    One folder per user, not per checkout, so that clones, worktrees and queued
    experiments of the project all load what any of them compiled.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "initstudy" / "jax"


def _cache_compilations() -> None:
    """Keep XLA's compiled programs, so that every run after the first loads its training
    step instead of compiling it again (about 2 s per stage). A cached program is the same
    machine code, so results stay bit-identical."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(compilation_cache()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    _replace_damaged_entries(compilation_cache())


def _replace_damaged_entries(folder: Path) -> None:
    """Delete a cache entry JAX cannot read, so that JAX writes the program it then compiles.

    JAX warns of such an entry and compiles the program, but never overwrites an entry that
    exists: without this, every later stage would warn again. The entry's files are named
    by the cache key that JAX's reader receives (jax._src.compilation_cache, JAX 0.10).
    """
    from jax._src import compilation_cache as cache

    read = cache.get_executable_and_time
    if getattr(read, "replaces_damaged", False):
        return

    def read_or_drop(cache_key: str, *args, **kwargs):
        try:
            return read(cache_key, *args, **kwargs)
        except Exception:
            for entry in folder.glob(f"{glob.escape(cache_key)}-*"):
                entry.unlink(missing_ok=True)
            raise

    read_or_drop.replaces_damaged = True  # type: ignore[attr-defined]
    cache.get_executable_and_time = read_or_drop


def exit_without_teardown() -> NoReturn:
    """End a stage whose outputs are written, with status 0, skipping the interpreter's
    teardown of JAX or TensorFlow and Keras: 0.45–0.6 s per run, about as much as DVC's
    own time between two stages. Buffered output and log records are flushed first; what
    is skipped is freeing memory and threads, which the operating system does anyway, and
    the frameworks' exit hooks (releasing the backend; JAX's compilation cache is written
    when a program is compiled, not at exit)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
