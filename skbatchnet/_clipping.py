"""Per-example clipping: each example's gradient norm, from the backward pass.

For a dense layer with input row ``a_i`` and output error ``d_i``, example
``i``'s gradient is the outer product ``a_i d_i^T`` (weights) and ``d_i``
(bias), whose squared norm is ``||d_i||^2 (||a_i||^2 + 1)``. Over every layer
``l`` of the network, the flattened gradient of the example's loss has::

    ||g_i||^2 = sum_l ||d_i^l||^2 (||a_i^(l-1)||^2 + 1),

read off the matrices one backward pass already holds, without forming any
outer product. Clipping to norm ``C`` scales example ``i``'s gradient by
``min(1, C / ||g_i||)``; the factor multiplies the rows of every layer's
error before the weight gradients are formed. The penalty is not an
example's and is not clipped.
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["clip_factors", "gradient_squared_norms", "row_squared_norms"]


def row_squared_norms(A):
    """``||a_i||^2`` of each row of ``A``, dense or sparse, in float64.

    In float64 whatever ``A``'s type, as the compiled loop sums them: a
    float32 square can overflow where the clipped gradient would not.
    scipy's element-wise product sums a sparse row's duplicate entries before
    squaring, as the matrix they stand for requires.
    """
    if sp.issparse(A):
        A = A.astype(np.float64)
        return np.asarray(A.multiply(A).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", A, A, dtype=np.float64)


def gradient_squared_norms(inputs, deltas):
    """``||g_i||^2`` of each example's loss gradient, every layer flattened.

    Parameters
    ----------
    inputs : list of {ndarray, sparse matrix}
        Each layer's input rows: ``X`` then the hidden activations.
    deltas : list of ndarray
        Each layer's output error rows, as many as ``inputs``.

    Returns
    -------
    squared : ndarray of shape (n_rows,)
        In float64.
    """
    squared = 0.0
    for A, D in zip(inputs, deltas, strict=True):
        squared = squared + row_squared_norms(D) * (row_squared_norms(A) + 1.0)
    return squared


def clip_factors(squared, max_norm):
    """``min(1, C / ||g_i||)`` for each row, and how many rows it shrinks.

    A zero gradient keeps factor 1. ``max_norm`` must be positive: 0 would
    drop every example, and a negative value would turn the steps around.
    """
    if not max_norm > 0:
        raise ValueError(
            f"The clipping norm must be positive, got max_norm={max_norm!r}. "
            "Pass a norm > 0, or None not to clip."
        )
    norms = np.sqrt(squared)
    clipped = norms > max_norm
    factors = np.ones_like(norms)
    np.divide(max_norm, norms, out=factors, where=clipped)
    return factors, int(np.count_nonzero(clipped))
