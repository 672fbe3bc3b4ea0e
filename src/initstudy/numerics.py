"""What would make a run's bits depend on the machine, pinned: NumPy's and OpenBLAS' code
paths, and the vector ISA of the compiled training code.

- OpenBLAS picks its kernels by CPU, and the QR behind `orthogonal` (and LSUV's start)
  rounds differently under each. The package forces one kernel, `BLAS_KERNEL`, with one
  thread (its blocked LAPACK otherwise rounds differently with each thread count).
- NumPy dispatches its loops (exp, tanh, log, …) to AVX2 or AVX-512 code where the CPU
  has it, with other last bits; the package keeps it on its baseline (x86-64-v2) code.
- XLA compiles the training step for the CPU's vector instructions, and both XLA and
  TensorFlow call oneDNN kernels that pick theirs at run time: with FMA (AVX2 and
  AVX-512) or without, and with wider vectors, sums round differently. `train.cpu_isa`
  caps both; the default, AVX, is what jaxlib itself requires, so every machine that
  runs JAX can run the same code.

Only the standard library is imported at the top: the package calls `pin_numpy` before
NumPy or SciPy is loaded.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

BLAS_KERNEL = "Sandybridge"  # OpenBLAS' AVX kernels: jaxlib needs AVX anyway
NUMPY_DISPATCH = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"  # NumPy 2.4's targets above its baseline
ISA_LEVELS = ("SSE4_2", "AVX", "AVX2", "AVX512")  # XLA's --xla_cpu_max_isa values, in order
NUMPY_FEATURE = {"SSE4_2": "SSE42", "AVX": "AVX", "AVX2": "AVX2", "AVX512": "AVX512F"}
ONEDNN_ISA = {"SSE4_2": "SSE41", "AVX": "AVX", "AVX2": "AVX2", "AVX512": "AVX512_CORE"}
_XLA_CAP = re.compile(r"--xla_cpu_max_isa=(\S*)")


def x86() -> bool:
    """Whether this is an x86-64 machine, where the pins apply."""
    return platform.machine().lower() in ("x86_64", "amd64")


def pin_numpy() -> None:
    """One OpenBLAS thread and kernel, NumPy's baseline loops; call before NumPy is imported."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if x86():
        os.environ["OPENBLAS_CORETYPE"] = BLAS_KERNEL
        os.environ["NPY_DISABLE_CPU_FEATURES"] = NUMPY_DISPATCH


def cpu_isa() -> str | None:
    """The widest of ISA_LEVELS this CPU has, None off x86-64."""
    if not x86():
        return None
    from numpy._core._multiarray_umath import __cpu_features__  # what the CPU has, dispatched or not

    have = [level for level in ISA_LEVELS if __cpu_features__.get(NUMPY_FEATURE[level])]
    return have[-1] if have else None


def _rank(level: str) -> int:
    """A level's place in ISA_LEVELS; anything XLA or oneDNN knows beyond them ranks above."""
    return ISA_LEVELS.index(level) if level in ISA_LEVELS else len(ISA_LEVELS)


def host_caps() -> list[str]:
    """The caps the host already set on XLA's code and oneDNN's kernels, as ISA_LEVELS or the
    host's own name of a higher level."""
    onednn = {value: level for level, value in ONEDNN_ISA.items()}
    caps = [cap.upper() for cap in _XLA_CAP.findall(os.environ.get("XLA_FLAGS", ""))]
    value = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return caps + ([onednn.get(value, value)] if value else [])


def effective_isa(wanted: str) -> str:
    """The ISA the compiled code and oneDNN will use: `wanted` (a level, or "native": the
    CPU's own), lowered to what the CPU has and to the host's caps; "native" off x86-64,
    where nothing is pinned."""
    if not x86():
        return "native"
    levels = [level for level in (cpu_isa(), *host_caps(), None if wanted == "native" else wanted) if level]
    best = min(levels, key=_rank) if levels else "native"
    return best if best in ISA_LEVELS else "native"


def pin_isa(wanted: str) -> None:
    """Cap the vector ISA of XLA's code and of oneDNN's kernels at `wanted`, unless the host
    caps it lower; "native" leaves both alone. Call before the backend starts."""
    if not x86() or wanted == "native":
        return
    isa = effective_isa(wanted)
    flags = _XLA_CAP.sub("", os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_cpu_max_isa={isa}"])
    os.environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_ISA[isa]


def environment(backend: str) -> dict[str, Any]:
    """What can change a run's bits besides its params, the same on every machine the pins
    cover: Python and library versions, backend and device, vector ISA in effect, NumPy's
    loops and OpenBLAS' kernels, architecture."""
    import h5py
    import keras
    import numpy
    import scipy
    from numpy._core._multiarray_umath import __cpu_features__
    from threadpoolctl import threadpool_info

    libraries = {"keras": keras, "numpy": numpy, "scipy": scipy, "h5py": h5py}
    if backend == "jax":
        import jax
        import jaxlib

        libraries |= {"jax": jax, "jaxlib": jaxlib}
        device = jax.default_backend()
    else:
        import tensorflow as tf

        libraries["tensorflow"] = tf
        device = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    simd = [level for level in ("X86_V2", "X86_V3", "X86_V4") if __cpu_features__.get(level)]
    return {
        "python": platform.python_version(),
        **{name: module.__version__ for name, module in libraries.items()},
        "backend": backend,
        "device": device,
        "cpu_isa": effective_isa("native") if device == "cpu" else device,
        "numpy_simd": simd[-1] if simd else platform.machine(),
        "blas_kernels": sorted({str(lib.get("architecture")) for lib in threadpool_info()
                                if lib.get("internal_api") == "openblas"}),
        "machine": platform.machine(),
    }


def cpu_model() -> str:
    """The CPU's model name (it does not change the bits)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or sys.platform
