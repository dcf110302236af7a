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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, xlogy


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


def _softmax(Z, out):
    np.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _squared_error(Y, Z):
    R = Z - Y
    return 0.5 * np.einsum("ij,ij->i", R, R)


def _poisson(Y, Z):
    with np.errstate(over="ignore"):
        terms = np.exp(Z)
    terms -= Y * Z
    terms += xlogy(Y, Y)
    terms -= Y
    return terms.sum(axis=1)


def _binary_log_loss(Y, Z):
    terms = np.logaddexp(0, Z)
    terms -= Y * Z
    return terms.sum(axis=1)


def _log_loss(Y, Z):
    m = Z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(Z - m).sum(axis=1)) + m[:, 0]
    # sum_k y_k is 1 for one-hot rows; keeping it makes the formula exact for
    # any non-negative targets, matching the gradient f(z) * sum(y) - y only
    # when rows sum to one, which is the only case the estimators produce.
    return lse * Y.sum(axis=1) - np.einsum("ij,ij->i", Y, Z)


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
    per_example : callable
        ``per_example(Y, Z)`` returns the loss of each row, shape (n,).
    """

    name: str
    out_activation: str
    activation: Callable
    per_example: Callable


LOSSES = {
    "squared_error": OutputLoss("squared_error", "identity", _identity, _squared_error),
    "poisson": OutputLoss("poisson", "exp", _exp, _poisson),
    "binary_log_loss": OutputLoss(
        "binary_log_loss", "logistic", _logistic, _binary_log_loss
    ),
    "log_loss": OutputLoss("log_loss", "softmax", _softmax, _log_loss),
}
