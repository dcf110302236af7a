"""Hidden-layer activations and their derivatives.

Each activation works in place on the pre-activation ``Z`` and leaves the
layer output ``A = f(Z)`` behind. Its derivative is expressed through that
output, not through ``Z``: for every activation offered here ``f'(Z)`` is a
function of ``f(Z)`` alone (``1 - A**2`` for tanh, ``A * (1 - A)`` for the
logistic, the indicator ``A > 0`` for relu), so the backward pass needs no
copy of the pre-activations.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from ._codes import ActivationCode


def identity(Z):
    """f(z) = z."""
    return Z


def logistic(Z):
    """f(z) = 1 / (1 + exp(-z)); scipy's expit never overflows."""
    return expit(Z, out=Z)


def tanh(Z):
    """f(z) = tanh(z)."""
    return np.tanh(Z, out=Z)


_zeros = {}


def _zeros_like(Z):
    """A read-only array of zeros shaped like ``Z``, from a cached buffer.

    np.maximum against a contiguous array runs its vectorized loop, which
    against the scalar 0 it does not.
    """
    buffer = _zeros.get(Z.dtype)
    if buffer is None or buffer.size < Z.size:
        buffer = np.zeros(Z.size, Z.dtype)
        buffer.flags.writeable = False
        _zeros[Z.dtype] = buffer
    return buffer[: Z.size].reshape(Z.shape)


def relu(Z):
    """f(z) = max(z, 0)."""
    if Z.size < 2048:  # on small arrays the lookup costs more than it saves
        return np.maximum(Z, 0.0, out=Z)
    return np.maximum(Z, _zeros_like(Z), out=Z)


def identity_derivative(A, delta):
    """f'(z) = 1: delta is unchanged."""
    return delta


def logistic_derivative(A, delta):
    """f'(z) = f(z) (1 - f(z))."""
    delta *= A
    delta *= 1 - A
    return delta


def tanh_derivative(A, delta):
    """f'(z) = 1 - f(z)^2."""
    delta *= 1 - A * A
    return delta


def relu_derivative(A, delta):
    """f'(z) = 1 if f(z) > 0 else 0 (the subgradient 0 at the kink)."""
    # A multiply by the mask streams through memory once, unlike a masked
    # assignment (delta[A <= 0] = 0).
    return np.multiply(delta, A > 0, out=delta)


@dataclass(frozen=True)
class Activation:
    """A hidden activation: its function, its derivative, its compiled kernel.

    Attributes
    ----------
    name : str
        The registry key, the estimators' ``activation`` value.
    function : callable
        ``function(Z)`` overwrites ``Z`` with ``f(Z)`` and returns it.
    derivative : callable
        ``derivative(A, delta)`` multiplies ``delta`` in place by ``f'(Z)``,
        written through ``A = f(Z)``, and returns it.
    code : ActivationCode or None
        The compiled loop's kernel for it (``_kernels.pxd``); None trains on
        the numpy path only.
    """

    name: str
    function: Callable
    derivative: Callable
    code: ActivationCode | None = None


ACTIVATIONS = {
    a.name: a
    for a in (
        Activation("identity", identity, identity_derivative, ActivationCode.IDENTITY),
        Activation("logistic", logistic, logistic_derivative, ActivationCode.LOGISTIC),
        Activation("tanh", tanh, tanh_derivative, ActivationCode.TANH),
        Activation("relu", relu, relu_derivative, ActivationCode.RELU),
    )
}
