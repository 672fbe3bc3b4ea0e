"""A reproducible DVC study of neural-network weight initializers."""

from initstudy.numerics import pin_numpy

# Before NumPy and SciPy load: one OpenBLAS thread and kernel, and NumPy's baseline loops,
# on every machine (see numerics.py). initialization.py also limits the BLAS threads at run
# time, for processes that loaded NumPy before this package.
pin_numpy()
