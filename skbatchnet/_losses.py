"""Output losses, each paired with its canonical output activation.

With a canonical link the derivative of the per-example loss with respect to
the output pre-activation ``z`` is ``f(z) - y``, whatever the loss: this is
why the backward pass starts from ``predictions - Y`` for every loss below.

Per-example losses are computed from ``z`` directly (log-sum-exp,
``logaddexp``), never from clipped probabilities, so they stay finite and
consistent with their gradients for any logits. Every loss sums over outputs:

=================  ==========  =============================================
loss               f(z)        loss_i
=================  ==========  =============================================
squared_error      z           0.5 * sum_k (y_k - z_k)^2
poisson            exp(z)      sum_k exp(z_k) - y_k z_k + y_k log y_k - y_k
binary_log_loss    logistic    sum_k log(1 + exp(z_k)) - y_k z_k
log_loss           softmax     log sum_k exp(z_k) - sum_k y_k z_k
=================  ==========  =============================================

The Poisson loss is the half deviance (zero for a perfect fit); the constant
``y log y - y`` does not change the gradient.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, xlogy

from ._codes import LossCode


def _identity(Z, out):
    out[...] = Z
    return out


def _exp(Z, out):
    # An exponent past the float range is a diverged fit; the caller reports
    # the non-finite loss instead of numpy warning about it.
    with np.errstate(over="ignore"):
        return np.exp(Z, out=out)


def _logistic(Z, out):
    return expit(Z, out=out)


@functools.cache
def _ones(n, dtype):
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


def _row_sums(A):
    """``A.sum(axis=1)`` as a BLAS product with a vector of ones.

    numpy's reduction along rows as short as an output layer's is slower
    than the product.
    """
    return np.dot(A, _ones(A.shape[1], A.dtype))


def _row_max(Z):
    """``Z.max(axis=1, keepdims=True)``.

    numpy's reduction along rows as short as an output layer's pays a fixed
    cost per row; with many more rows than columns, a running maximum over
    the columns is quicker.
    """
    n, k = Z.shape
    if n <= 16 * k:
        return Z.max(axis=1, keepdims=True)
    m = Z[:, 0].copy()
    for j in range(1, k):
        np.maximum(m, Z[:, j], out=m)
    return m[:, None]


def _normalized_exp(Z, out):
    """Softmax of ``Z`` into ``out``, keeping what the log-sum-exp needs.

    Returns the row maxima ``m`` and the row sums of ``exp(z - m)``.
    """
    m = _row_max(Z)
    np.subtract(Z, m, out=out)
    np.exp(out, out=out)
    sums = _row_sums(out)
    out /= sums[:, None]
    return m[:, 0], sums


def _softmax(Z, out):
    _normalized_exp(Z, out)
    return out


# Each ``*_error(Y, Z, out)`` writes the output error ``f(Z) - Y`` into ``out``
# and returns the per-example losses, sharing the work the two have in common
# (the exponentials, the log-sum-exp): training needs both at every step.


def _squared_error_error(Y, Z, out):
    R = np.subtract(Z, Y, out=out)
    return 0.5 * np.einsum("ij,ij->i", R, R)


def _poisson_error(Y, Z, out):
    predicted = _exp(Z, out)
    losses = np.einsum("ij->i", predicted)
    losses -= np.einsum("ij,ij->i", Y, Z)
    losses += np.einsum("ij->i", xlogy(Y, Y) - Y)
    predicted -= Y
    return losses


def _binary_log_loss_error(Y, Z, out):
    losses = np.einsum("ij->i", np.logaddexp(0, Z))
    losses -= np.einsum("ij,ij->i", Y, Z)
    _logistic(Z, out)
    out -= Y
    return losses


def _log_loss_error(Y, Z, out):
    m, sums = _normalized_exp(Z, out)
    out -= Y
    # log sum_k exp(z_k) - sum_k y_k z_k: its gradient is exactly softmax(z) - y
    # (written above) for any targets; the estimators' one-hot rows are one case.
    losses = np.log(sums, out=sums)
    losses += m
    losses -= _row_sums(Y * Z)
    return losses


@dataclass(frozen=True)
class OutputLoss:
    """A loss and the output activation that makes it canonical.

    Attributes
    ----------
    name : str
        The registry key.
    out_activation : str
        Name of the output activation, as in scikit-learn's
        ``out_activation_``.
    activation : callable
        ``activation(Z, out)`` writes ``f(Z)`` into ``out`` and returns it.
    error : callable
        ``error(Y, Z, out)`` writes ``d loss_i / d z_i = f(Z) - Y`` into
        ``out`` and returns the loss of each row, shape (n,).
    code : LossCode or None
        The compiled loop's kernel for it (``_kernels.pxd``); None trains on
        the numpy path only.
    """

    name: str
    out_activation: str
    activation: Callable
    error: Callable
    code: LossCode | None = None

    def per_example(self, Y, Z):
        """The loss of each row, shape (n,)."""
        return self.error(Y, Z, np.empty_like(Z))


LOSSES = {
    loss.name: loss
    for loss in (
        OutputLoss(
            "squared_error",
            "identity",
            _identity,
            _squared_error_error,
            LossCode.SQUARED_ERROR,
        ),
        OutputLoss("poisson", "exp", _exp, _poisson_error, LossCode.POISSON),
        OutputLoss(
            "binary_log_loss",
            "logistic",
            _logistic,
            _binary_log_loss_error,
            LossCode.BINARY_LOG_LOSS,
        ),
        OutputLoss("log_loss", "softmax", _softmax, _log_loss_error, LossCode.LOG_LOSS),
    )
}
