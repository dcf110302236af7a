"""Buffers and product kernels for passes over batches of one shape.

Training calls the network's gradient thousands of times on batches of the
same shape. A :class:`Workspace` holds every array such a call writes, and
picks the matrix-product kernels for that shape once, when it is built, so
the backward pass reads as the math: one weight-gradient product and one
bias-gradient product per layer.
"""

import functools
import math
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import get_blas_funcs
from sklearn import get_config

from ._codes import ONE_THREAD_GEMM, SMALL_BATCH_ROWS
from ._extension import one_thread_product

__all__ = ["Workspace", "chunk_rows", "chunks"]


def parameter_shapes(layer_units):
    """Weights first, then biases: the order of scikit-learn's packed vector."""
    coefs = list(pairwise(layer_units))
    return coefs, [(u,) for u in layer_units[1:]]


def views(flat, shapes):
    """Consecutive views of ``flat`` with the given shapes."""
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def dense_product(n_rows, dtype):
    """The product ``product(A, W, out=)`` for dense batches of ``n_rows`` rows.

    Small batches (below ``SMALL_BATCH_ROWS``) of BLAS's types take the
    compiled tier's product, whose BLAS calls are each small enough for
    OpenBLAS to run on one thread: through numpy, a product of one row by a
    128 x 128 matrix wakes all of its threads at every step, and numpy has
    no per-call thread count. Larger batches, other types, and a package
    without its build take np.matmul.
    """
    small = n_rows < SMALL_BATCH_ROWS and one_thread_product is not None
    if small and np.dtype(dtype) in (np.float32, np.float64):
        return one_thread_product
    return np.matmul


def input_product(X, W, out):
    """``out = X @ W`` for dense or sparse ``X`` without an extra temporary."""
    if sp.issparse(X):
        out[...] = X @ W
        return out
    return np.matmul(X, W, out=out)


def _numpy_weight_gradient(A, delta, out, add=False):
    """``out = A.T @ delta`` (``out += A.T @ delta`` with ``add``)."""
    if add or sp.issparse(A):
        product = A.T @ delta  # new memory: a sparse product has no out=
        if add:
            out += product
        else:
            out[...] = product
        return out
    if A.shape[0] == 1:
        # An outer product: np.matmul takes a non-BLAS path when the inner
        # dimension is 1.
        return np.dot(A.T, delta, out=out)
    return np.matmul(A.T, delta, out=out)


def _gemm_weight_gradient(gemm, A, delta, out, add=False):
    """``out = A.T @ delta (+ out)`` by scipy's BLAS gemm, in place.

    In Fortran order the product reads ``out.T = delta.T @ A``, and each of
    those operands is a transposed view of a C-contiguous buffer, so gemm
    reads and writes them where they are.
    """
    if sp.issparse(A):
        return _numpy_weight_gradient(A, delta, out, add)
    gemm(1.0, delta.T, A.T, beta=float(add), c=out.T, trans_b=True, overwrite_c=True)
    return out


def chunk_rows(layer_units, dtype, budget_mib=None):
    """Rows per chunk so that a chunk's buffers fit in ``budget_mib`` MiB.

    A row of a batch needs, per layer after the input, an activation and a
    delta: ``2 * sum(units)`` floats. The default budget is scikit-learn's
    ``working_memory`` setting, as for its other chunked computations.

    Examples
    --------
    >>> chunk_rows([100, 256, 1], np.float64, budget_mib=1)
    255
    """
    if budget_mib is None:
        budget_mib = get_config()["working_memory"]
    row_bytes = np.dtype(dtype).itemsize * 2 * sum(layer_units[1:])
    rows = budget_mib * 2**20 // row_bytes
    # working_memory is a float that scikit-learn does not bound: an
    # unbounded budget (inf) or a huge one asks for no chunking, and the row
    # count still has to fit the loop's Py_ssize_t.
    largest = np.iinfo(np.intp).max
    return largest if not rows < largest else max(1, int(rows))


def chunks(n_rows, size):
    """Slices covering ``range(n_rows)`` in ``ceil(n_rows / size)`` chunks.

    The chunks differ in length by at most one row and none exceeds ``size``:
    cutting chunks of exactly ``size`` rows can leave a short last one, whose
    products run far below the BLAS rate of the others.

    Examples
    --------
    >>> chunks(10, 4)
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    count = -(-n_rows // size)
    return [slice(i * n_rows // count, (i + 1) * n_rows // count) for i in range(count)]


class Workspace:
    """Buffers and kernels for forward and backward passes on one batch shape.

    The arrays a pass writes into a workspace are overwritten by the next
    pass. Batches shorter than ``n_samples`` use views of the first rows.

    Parameters
    ----------
    layer_units : list of int
        Units per layer, input first.
    n_samples : int
        Rows per batch.
    dtype : numpy dtype
        Floating dtype of the network.

    Attributes
    ----------
    gradient : ndarray of shape (n_parameters,)
        The gradient as one vector, laid out like
        :attr:`~skbatchnet.backprop.Network.parameters`; ``coef_grads`` and
        ``intercept_grads`` are views into it.
    weight_gradient : callable
        ``weight_gradient(A, delta, out, add=False)`` writes ``A.T @ delta``
        into ``out`` (adds it with ``add``). For batches under 64 rows of
        float32 or float64 it is scipy's BLAS gemm, which adds in place, so
        :attr:`decay_in_place` is True: the L2 term is written first and each
        product added onto it.
    product : callable
        ``product(A, W, out=)``, the dense product of the hidden layers.
    """

    def __init__(self, layer_units, n_samples, dtype):
        self.n_samples = n_samples
        self.activations = [np.empty((n_samples, u), dtype) for u in layer_units[1:]]
        coef_shapes, intercept_shapes = parameter_shapes(layer_units)
        n_coefs = sum(a * b for a, b in coef_shapes)
        self.gradient = np.empty(n_coefs + sum(layer_units[1:]), dtype)
        grads = views(self.gradient, coef_shapes + intercept_shapes)
        self.coef_grads = grads[: len(coef_shapes)]
        self.intercept_grads = grads[len(coef_shapes) :]
        self.penalty = np.empty(n_coefs, dtype)
        self.product = dense_product(n_samples, dtype)
        # On small batches scipy's gemm adds each product onto the weight
        # decay in one pass. BLAS has no other floating types: for float16 or
        # longdouble scipy would write into a copy.
        # Only where OpenBLAS runs the product on one thread: a threaded gemm
        # of scipy's BLAS beside numpy's makes their two thread pools fight
        # over the cores, which costs far more than the product.
        largest = max(a * b for a, b in coef_shapes)
        one_thread = n_samples * largest < ONE_THREAD_GEMM
        blas_type = np.dtype(dtype) in (np.float32, np.float64)
        if blas_type and one_thread and n_samples < SMALL_BATCH_ROWS:
            gemm = get_blas_funcs("gemm", dtype=dtype)
            self.weight_gradient = functools.partial(_gemm_weight_gradient, gemm)
            self.decay_in_place = True
        else:
            self.weight_gradient = _numpy_weight_gradient
            self.decay_in_place = False
        # Bias gradients are column sums of the deltas, ones @ delta on BLAS.
        self.ones = np.ones(n_samples, dtype)
        # With one row, a layer's delta *is* its bias gradient: the deltas then
        # live in the gradient vector and the bias products are skipped.
        self._deltas_are_bias_gradients = n_samples == 1
        if self._deltas_are_bias_gradients:
            self.deltas = [g.reshape(1, -1) for g in self.intercept_grads]
        else:
            self.deltas = [np.empty((n_samples, u), dtype) for u in layer_units[1:]]
        self._accumulator = None
        # Rows whose gradient the last backward pass clipped (Network.gradient).
        self.n_clipped = 0
        self.noise_estimates = None  # a step's (|G|^2, tr) (_noise_scale.py)

    def rows(self, n_rows):
        """``(activations, deltas)`` for a batch of ``n_rows`` rows."""
        if n_rows == self.n_samples:
            return self.activations, self.deltas
        if n_rows > self.n_samples:
            raise ValueError(
                f"The workspace holds batches of at most {self.n_samples} rows; "
                f"got {n_rows}."
            )
        return (
            [A[:n_rows] for A in self.activations],
            [D[:n_rows] for D in self.deltas],
        )

    def bias_gradient(self, layer, delta):
        """Write layer ``layer``'s bias gradient, the column sums of ``delta``."""
        if not self._deltas_are_bias_gradients:
            np.dot(self.ones[: delta.shape[0]], delta, out=self.intercept_grads[layer])

    def accumulator(self):
        """A second gradient vector, for summing chunks of a large batch."""
        if self._accumulator is None:
            self._accumulator = np.empty_like(self.gradient)
        return self._accumulator
