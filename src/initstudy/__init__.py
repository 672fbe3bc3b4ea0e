"""A reproducible DVC study of neural-network weight initializers."""

import os

# One OpenBLAS thread, fixed before NumPy and SciPy load the library: the QR behind
# `orthogonal` runs in its LAPACK, whose results depend on its thread count and, after a
# first call in the same process, can vary in the last bits unless it starts single-threaded.
# Training runs in XLA, not here. initialization.py also limits the threads at run time,
# for processes that loaded NumPy before this package.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
