"""What would make a run's bits depend on the machine, pinned: the BLAS kernel and XLA's vector ISA.

- OpenBLAS picks its kernels by CPU, and the QR behind `orthogonal` (and LSUV's start)
  rounds differently under each. The package forces one kernel, `BLAS_KERNEL`, before
  NumPy and SciPy load OpenBLAS, with one thread, whose blocked LAPACK otherwise rounds
  differently with each thread count.
- XLA compiles the training step for the CPU's vector instructions: with FMA (AVX2 and
  AVX-512) or without, and with wider vectors, sums round differently. `train.cpu_isa`
  caps it; the default, AVX, is what jaxlib itself requires, so every machine that runs
  JAX runs the same code.

Only the standard library is imported here: the package runs `pin_blas` first of all.
"""

from __future__ import annotations

import os
import platform
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

BLAS_KERNEL = "Sandybridge"  # OpenBLAS' AVX kernel: jaxlib needs AVX anyway
ISA_LEVELS = ("SSE4_2", "AVX", "AVX2", "AVX512")  # XLA's --xla_cpu_max_isa values, in order
CPU_FLAGS = {"SSE4_2": "sse4_2", "AVX": "avx", "AVX2": "avx2", "AVX512": "avx512f"}
ONEDNN_ISA = {"SSE4_2": "SSE41", "AVX": "AVX", "AVX2": "AVX2", "AVX512": "AVX512_CORE"}
_MAX_ISA = re.compile(r"--xla_cpu_max_isa=(\S+)")


def x86() -> bool:
    """Whether this is an x86-64 machine, where the pins apply."""
    return platform.machine().lower() in ("x86_64", "amd64")


def pin_blas() -> None:
    """One OpenBLAS thread and the fixed kernel; call before NumPy or SciPy is imported."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if x86():
        os.environ["OPENBLAS_CORETYPE"] = BLAS_KERNEL


def cpu_isa() -> str | None:
    """The widest of ISA_LEVELS this CPU has (read from /proc/cpuinfo), None if unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if not x86() or not cpuinfo.exists():
        return None
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    have = [level for level in ISA_LEVELS if CPU_FLAGS[level] in flags]
    return have[-1] if have else None


def effective_isa(wanted: str) -> str:
    """The ISA the compiled code will use: `wanted` (a level or "native"), lowered to what the
    CPU has and to a cap already in XLA_FLAGS (how a host or a test narrows it)."""
    levels = [level for level in (cpu_isa(), *_MAX_ISA.findall(os.environ.get("XLA_FLAGS", "")))
              if level in ISA_LEVELS]
    if wanted != "native":
        levels.append(wanted)
    return min(levels, key=ISA_LEVELS.index) if levels else "native"


def pin_isa(wanted: str) -> str:
    """Cap the vector ISA of XLA's CPU code (and oneDNN's, for TensorFlow) at `wanted`; call
    before the backend starts. Returns the ISA in effect."""
    isa = effective_isa(wanted)
    if not x86() or isa == "native":
        return isa
    flags = _MAX_ISA.sub("", os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_cpu_max_isa={isa}"])
    os.environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_ISA[isa]
    return isa


def blas_kernels() -> list[str]:
    """The kernel each loaded OpenBLAS runs (NumPy's and SciPy's), as OpenBLAS names it."""
    from threadpoolctl import threadpool_info

    return sorted({str(lib.get("architecture")) for lib in threadpool_info() if lib.get("internal_api") == "openblas"})


def environment(backend: str) -> dict[str, Any]:
    """What can change a run's bits besides its params, identical on every machine the pins
    cover: library versions, backend, vector ISA in effect, BLAS kernels, architecture."""
    libraries = ["keras", "numpy", "jax", "jaxlib"] if backend == "jax" else ["keras", "numpy", "tensorflow"]
    return {
        "backend": backend,
        **{name: version(name) for name in libraries},
        "cpu_isa": effective_isa("native"),
        "blas_kernels": blas_kernels(),
        "machine": platform.machine(),
    }


def cpu_model() -> str:
    """The CPU's model name, for the run's log (it does not change the bits)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
