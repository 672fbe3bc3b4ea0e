"""A reproducible DVC study of neural-network weight initializers."""

from initstudy.numerics import pin_blas

# Before NumPy and SciPy load OpenBLAS: one thread and one kernel on every machine
# (see numerics.py). Training runs in XLA, not here; initialization.py also limits the
# threads at run time, for processes that loaded NumPy before this package.
pin_blas()
