# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""The compiled products, for the numpy path's small batches (see _products.pxd).

numpy has no per-call thread count, and OpenBLAS wakes all its threads for a
product as small as one row by a 128 x 128 matrix; these calls stay on the
calling thread. :mod:`skbatchnet._extension` imports this module where it is
built, and the numpy path falls back to numpy's products where it is not.
"""

import numpy as np

from cython cimport floating

from ._codes import ONE_THREAD_GEMM, ONE_THREAD_GEMV, TINY_PRODUCT

__all__ = ["one_thread_product", "squared_norm"]

# The thresholds of skbatchnet/_codes.py, typed once at import.
cdef Py_ssize_t _GEMV_LIMIT = ONE_THREAD_GEMV
cdef Py_ssize_t _GEMM_LIMIT = ONE_THREAD_GEMM
cdef Py_ssize_t _TINY_PRODUCT = TINY_PRODUCT


def squared_norm(const floating[::1] w not None):
    """``sum(w ** 2)`` in double, on one thread (see squared_norm_of).

    Examples
    --------
    >>> import numpy as np
    >>> squared_norm(np.array([3.0, 4.0]))
    25.0
    """
    cdef double total
    with nogil:
        total = squared_norm_of(&w[0], w.shape[0]) if w.shape[0] else 0.0
    return total


def one_thread_product(
    const floating[:, ::1] A not None,
    const floating[:, :] W not None,
    floating[:, ::1] out not None,
):
    """``out = A @ W``, in BLAS calls each small enough to run on one thread.

    The numpy path's products for batches of fewer than ``SMALL_BATCH_ROWS``
    rows (skbatchnet/_codes.py):
    numpy has no per-call thread count, and OpenBLAS wakes all its threads
    for a product as small as one row by a 128 x 128 matrix.

    Parameters
    ----------
    A : ndarray of shape (n, k), C-contiguous
    W : ndarray of shape (k, m)
        C-contiguous (a weight matrix), or F-contiguous (the transpose of
        one, as in the backward pass).
    out : ndarray of shape (n, m), C-contiguous

    Returns
    -------
    out : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> A, W = np.ones((2, 3)), np.arange(12.0).reshape(4, 3)
    >>> one_thread_product(A, W.T, np.empty((2, 4)))
    array([[ 3., 12., 21., 30.],
           [ 3., 12., 21., 30.]])
    """
    cdef Py_ssize_t n = A.shape[0], k = A.shape[1], m = W.shape[1]
    cdef Py_ssize_t size = sizeof(floating)
    cdef Py_ssize_t limit = _GEMV_LIMIT if n == 1 else _GEMM_LIMIT
    cdef bint own = n * k * m <= _TINY_PRODUCT
    cdef bint c_order = W.strides[1] == size and W.strides[0] == m * size
    if W.shape[0] != k or out.shape[0] != n or out.shape[1] != m:
        raise ValueError(
            f"Shapes do not match: A ({n}, {k}), W ({W.shape[0]}, {m}), "
            f"out ({out.shape[0]}, {out.shape[1]})."
        )
    if not c_order and not (W.strides[0] == size and W.strides[1] == k * size):
        raise ValueError("W must be C- or F-contiguous.")
    if n == 0 or m == 0:
        return np.asarray(out)
    if k == 0:
        out[:, :] = 0
        return np.asarray(out)
    with nogil:
        if c_order:
            forward_product(
                n, k, m, <floating*>&A[0, 0], <floating*>&W[0, 0], &out[0, 0], own,
                limit,
            )
        else:
            # W is the transpose of a C-contiguous (m, k) matrix.
            backward_product(
                n, m, k, <floating*>&A[0, 0], <floating*>&W[0, 0], &out[0, 0], own,
                limit,
            )
    return np.asarray(out)
