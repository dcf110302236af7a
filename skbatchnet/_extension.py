"""The compiled extension, where it is built: the one place Python imports it.

The package runs without it. The numpy path (the specification) then computes
its small products with numpy instead of the one-thread products of
``_products``, and every epoch runs on the numpy path; the first fit that
would have used the compiled loop warns once how to build it.
"""

import os

import numpy as np

from ._warn import warn

__all__ = [
    "FORCE_PORTABLE",
    "epoch_module",
    "one_thread_product",
    "squared_norm",
    "warn_not_built",
]

# SKBATCHNET_NO_AVX2=1 (read once, at import) keeps the portable epoch on a
# CPU that has AVX2: how a build's portable module is tested on such a CPU
# (.ci/wheel), and a way out should the twin ever misbehave on one.
FORCE_PORTABLE = os.environ.get("SKBATCHNET_NO_AVX2", "") not in ("", "0")

try:
    from . import _epoch, _plan, _products
except ImportError:  # a source tree or a copy without the build
    _epoch = _plan = _products = None
else:
    if _epoch.cpu_has_avx2() and not FORCE_PORTABLE:
        # The same loop built for AVX2, where the build made one (setup.py);
        # it computes the same bits, with vectors twice as wide.
        try:
            from . import _epoch_avx2 as _epoch
        except ImportError:  # pragma: no cover - a build without the twin
            pass

NOT_BUILT = (
    "skbatchnet's compiled training loop is not built, so training runs on "
    "the numpy path, which is slower at small batch sizes. Install skbatchnet "
    "with pip, which compiles it and needs a C compiler: in a source checkout, "
    "`pip install -e .` builds it in place, where Python run from the checkout "
    "finds it (`pip install .` builds it only into site-packages)."
)
_warned = []


def warn_not_built():
    """Warn, once per process, that the compiled loop is missing."""
    if not _warned:
        _warned.append(True)
        warn(NOT_BUILT, RuntimeWarning)


def epoch_module():
    """The compiled epoch and its typed state, ``(_epoch, _plan)``, or None."""
    return None if _epoch is None else (_epoch, _plan)


one_thread_product = None if _products is None else _products.one_thread_product

_FLOATS = (np.float32, np.float64)


def squared_norm(w):
    """``sum(w ** 2)`` of a 1-D array, without waking BLAS threads.

    OpenBLAS runs a dot product of more than 10000 entries on all its
    threads, woken at every step of a small batch; the compiled sum runs on
    the calling thread. Without the build, and for types BLAS lacks, np.dot.
    """
    if _products is not None and w.dtype.type in _FLOATS:
        return _products.squared_norm(np.ascontiguousarray(w))
    return float(np.dot(w, w))
