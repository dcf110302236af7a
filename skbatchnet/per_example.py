"""Per-example gradients, materialized or as norms, from one backward pass.

For a dense layer with input ``a_i`` and output delta ``d_i`` (row ``i`` of
the batch), the per-example weight gradient is the outer product
``a_i d_i^T`` plus the example's share of the penalty, ``k W`` with
``k = alpha / S``. Its squared Frobenius norm needs no outer product::

    ||a_i d_i^T + k W||^2 = ||a_i||^2 ||d_i||^2 + 2k a_i^T W d_i + k^2 ||W||^2

and the bias gradient ``d_i`` adds ``||d_i||^2``. So the norms of all
per-example gradients cost one forward pass and the propagation of deltas,
less than an ordinary batch gradient (which also forms ``A^T D`` per layer).

Examples
--------
>>> import numpy as np
>>> from skbatchnet.backprop import Network
>>> from skbatchnet.per_example import (
...     per_example_gradient_norms, per_example_gradients)
>>> rng = np.random.RandomState(0)
>>> X, y = rng.randn(5, 3), rng.randn(5)
>>> net = Network.initialize([3, 4, 1], activation="tanh", random_state=0)
>>> coef_grads, intercept_grads = per_example_gradients(net, X, y, alpha=0.1)
>>> flat = np.hstack([g.reshape(5, -1) for g in coef_grads + intercept_grads])
>>> norms = per_example_gradient_norms(net, X, y, alpha=0.1)
>>> bool(np.allclose(norms, np.linalg.norm(flat, axis=1)))
True
"""

import numpy as np
import scipy.sparse as sp

from ._workspace import Workspace, chunks
from .backprop import check_batch

__all__ = [
    "per_example_gradients",
    "per_example_gradient_norms",
    "per_example_input_gradients",
]


def _row_dots(A, B):
    """Row-wise dot products of ``A`` (dense or sparse) and dense ``B``."""
    if sp.issparse(A):
        return np.asarray(A.multiply(B).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", A, B)


def _row_squared_norms(A):
    if sp.issparse(A):
        return np.asarray(A.multiply(A).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", A, A)


def per_example_gradients(network, X, y, *, alpha=0.0, total_weight=None):
    """Materialize each example's gradient ``g_i`` (for small batches).

    Memory grows as ``n_samples * n_parameters``: this is for inspection and
    teaching. Sample weights are not applied: they enter through the
    reduction, ``sum_i c_i g_i``.

    Parameters
    ----------
    network : Network
        The network whose parameters the gradients are taken in.
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        The examples.
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Their targets, as the network's loss takes them (one-hot rows for
        ``'log_loss'``).
    alpha : float, default=0.0
        L2 penalty strength: each ``g_i`` carries ``(alpha / S) W``.
    total_weight : float, default=None
        ``S``, the weight of the whole training set; defaults to ``n_samples``.

    Returns
    -------
    coef_grads : list of ndarray of shape (n_samples, fan_in, fan_out)
    intercept_grads : list of ndarray of shape (n_samples, fan_out)
    """
    Y = check_batch(network, X, y)
    n = X.shape[0]
    k = alpha / float(n if total_weight is None else total_weight)
    ws = Workspace(network.layer_units, n, network.dtype)
    # c_i = 1: the deltas are each example's own, unscaled.
    network.backward(X, Y, workspace=ws, gradients=False)
    dense_X = X.toarray() if sp.issparse(X) else X
    inputs = [dense_X.astype(network.dtype, copy=False)] + ws.activations[:-1]
    coef_grads = []
    for A, D, W in zip(inputs, ws.deltas, network.coefs):
        G = np.einsum("ni,nj->nij", A, D)
        if k:
            G += k * W
        coef_grads.append(G)
    return coef_grads, [D.copy() for D in ws.deltas]


def per_example_gradient_norms(network, X, y, *, alpha=0.0, total_weight=None):
    """Euclidean norm of each example's full gradient ``g_i``, never formed.

    Exact up to rounding (see the module docstring for the identity), for
    dense and sparse ``X``, in chunks bounded by ``working_memory``.

    Parameters
    ----------
    network, X, y, alpha, total_weight
        As in :func:`per_example_gradients`.

    Returns
    -------
    norms : ndarray of shape (n_samples,)
    """
    Y = check_batch(network, X, y)
    n = X.shape[0]
    k = alpha / float(n if total_weight is None else total_weight)
    ws = network.workspace(n)
    norms = np.empty(n, network.dtype)
    for rows in chunks(n, ws.n_samples):
        X_chunk = X[rows]
        cross = [None] * len(network.coefs) if k else None
        network.backward(X_chunk, Y[rows], workspace=ws, gradients=False, cross=cross)
        activations, deltas = ws.rows(X_chunk.shape[0])
        squared = np.zeros(X_chunk.shape[0], network.dtype)
        for layer, (W, D) in enumerate(zip(network.coefs, deltas)):
            A = X_chunk if layer == 0 else activations[layer - 1]
            d2 = np.einsum("ij,ij->i", D, D)
            squared += d2 * (_row_squared_norms(A) + 1.0)  # weights and bias
            if k:
                if layer == 0:  # the input layer sends no error below
                    cross[0] = _row_dots(A, D @ W.T)
                squared += 2 * k * cross[layer] + k * k * float(np.vdot(W, W))
        norms[rows] = np.sqrt(np.maximum(squared, 0))
    return norms


def per_example_input_gradients(network, X, y):
    """Gradient of each example's loss with respect to its own input row.

    ``d loss_i / d x_i``, the quantity behind saliency maps (which input
    features move this prediction's loss?) and input optimization. The
    backward pass already has the first layer's deltas
    ``delta_1,i = d loss_i / d z_1,i`` for ``z_1,i = x_i W_1 + b_1``, so the
    chain rule needs one more product for all rows at once::

        d loss_i / d x_i = delta_1,i W_1^T,   i.e.   D_1 W_1^T.

    The penalty does not depend on the input and sample weights only scale
    the rows, so neither enters. Rows are processed in chunks bounded by
    ``working_memory``.

    Parameters
    ----------
    network : Network
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Targets as the network's loss takes them (one-hot rows for
        ``'log_loss'``).

    Returns
    -------
    input_grads : ndarray of shape (n_samples, n_features)
        Row ``i`` is ``d loss_i / d x_i``. A dense array even for sparse
        ``X``: the gradient of a feature that is zero in a row is in
        general not zero.

    Examples
    --------
    >>> import numpy as np
    >>> from skbatchnet.backprop import Network
    >>> from skbatchnet.per_example import per_example_input_gradients
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.randn(5, 3), rng.randn(5)
    >>> net = Network.initialize([3, 4, 1], activation="tanh", random_state=0)
    >>> grads = per_example_input_gradients(net, X, y)
    >>> grads.shape
    (5, 3)

    Central differences of the first example's loss in its first feature:

    >>> h = 1e-6
    >>> up, down = X[:1].copy(), X[:1].copy()
    >>> up[0, 0] += h
    >>> down[0, 0] -= h
    >>> numeric = (net.per_example_loss(up, y[:1])[0]
    ...            - net.per_example_loss(down, y[:1])[0]) / (2 * h)
    >>> bool(np.isclose(grads[0, 0], numeric))
    True
    """
    n = X.shape[0]
    Y = check_batch(network, X, y)
    W1 = network.coefs[0]
    ws = network.workspace(n)
    input_grads = np.empty((n, W1.shape[0]), network.dtype)
    for rows in chunks(n, ws.n_samples):
        X_chunk = X[rows]
        # c_i = 1 and no weight gradients: only the deltas are needed.
        network.backward(X_chunk, Y[rows], workspace=ws, gradients=False)
        _, deltas = ws.rows(X_chunk.shape[0])
        np.dot(deltas[0], W1.T, out=input_grads[rows])
    return input_grads
