"""The reduction: how per-example gradients become one minibatch gradient.

Every step of training follows ``sum_i c_i g_i`` over the batch, with the
coefficients ``c_i`` given here. Because the result is linear in the
per-example gradients, the backward pass applies ``c_i`` to each example's
output error once and then needs one matrix product per layer for the whole
batch (see :mod:`skbatchnet.backprop`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._codes import ReductionCode

__all__ = ["REDUCTIONS", "Coefficients", "Reduction", "reduction_coefficients"]


class Coefficients(NamedTuple):
    """The coefficients ``c_i`` of a reduction and their sum.

    Attributes
    ----------
    c : float or ndarray of shape (n_samples,)
        A scalar when every example has the same coefficient.
    total : float
        ``sum_i c_i``; it multiplies the penalty term ``(alpha / S) W``.
    """

    c: object
    total: float

    def scaled(self, factor):
        """The coefficients times ``factor``: the reduced gradient times ``factor``.

        The reduced gradient ``sum_i c_i g_i`` is linear in the ``c_i``, so
        scaling a few coefficients scales the whole gradient vector.
        """
        if factor == 1.0:
            return self
        return Coefficients(self.c * factor, self.total * factor)


def _mean_coefficients(sample_weight, n_samples):
    if sample_weight is None:
        return 1.0 / n_samples, 1.0
    # The total in float64, which float32 weights cannot overflow; the
    # coefficients, at most 1, back in float32 for float32 weights.
    total = np.float64(np.sum(sample_weight, dtype=np.float64))
    if not total > 0:
        raise ValueError(
            "The 'mean' reduction divides by the batch's total sample weight, "
            "which is 0 for this batch. Give the batch a positive weight or "
            "skip it."
        )
    dtype = np.result_type(sample_weight.dtype, np.float32)
    return (sample_weight / total).astype(dtype, copy=False), 1.0


def _sum_coefficients(sample_weight, n_samples):
    if sample_weight is None:
        return 1.0, float(n_samples)
    return sample_weight, float(np.sum(sample_weight, dtype=np.float64))


@dataclass(frozen=True)
class Reduction:
    """A reduction: its coefficients and its compiled kernel.

    Attributes
    ----------
    name : str
        The registry key, the estimators' ``gradient_reduction`` value.
    coefficients : callable
        ``coefficients(sample_weight, n_samples)`` returns ``(c, total)``
        as :func:`reduction_coefficients` documents them.
    code : ReductionCode or None
        The compiled loop's kernel for it; None trains on the numpy path only.
    """

    name: str
    coefficients: Callable
    code: ReductionCode | None = None


REDUCTIONS = {
    r.name: r
    for r in (
        Reduction("mean", _mean_coefficients, ReductionCode.MEAN),
        Reduction("sum", _sum_coefficients, ReductionCode.SUM),
    )
}


def reduction_coefficients(sample_weight, n_samples, reduction="mean"):
    """Coefficients ``c_i`` such that the reduced gradient is ``sum_i c_i g_i``.

    This is the one place where per-example gradients ``g_i`` become a
    minibatch gradient:

    - ``'mean'``: ``c_i = s_i / sum_j s_j``, so the step follows
      ``sum_i s_i g_i / sum_i s_i``. For a batch of ``B`` rows drawn
      uniformly without replacement (as a shuffled epoch draws them) from a
      training set of unit weights, it is an unbiased estimate of
      ``grad E``, the gradient of the whole-set objective. With unequal
      weights it is a ratio of two random sums (a ratio estimator), slightly
      biased except for the whole set, where it is ``grad E`` exactly;
    - ``'sum'``: ``c_i = s_i``, so the step follows ``sum_i s_i g_i`` and grows
      with the batch (the linear learning-rate scaling rule). For such a
      batch it is an unbiased estimate of ``B grad E`` with unit weights,
      and of ``B (S / n) grad E`` with weights of total ``S`` over ``n``
      rows.

    Without sample weights ``s_i = 1``.

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative weights of the examples in the batch.
    n_samples : int
        Number of examples in the batch.
    reduction : {'mean', 'sum'}, default='mean'
        How per-example gradients are combined.

    Returns
    -------
    coefficients : Coefficients
        ``(c, total)``: ``c`` is a float when every example has the same
        coefficient, else an ndarray of shape (n_samples,); ``total`` is
        ``sum_i c_i``, 1 for ``'mean'`` and the batch's total weight for
        ``'sum'``. It multiplies the penalty term ``(alpha / S) W`` of the
        reduced gradient.

    Examples
    --------
    >>> import numpy as np
    >>> reduction_coefficients(np.array([1.0, 3.0]), 2, "mean")
    Coefficients(c=array([0.25, 0.75]), total=1.0)
    >>> reduction_coefficients(None, 4, "sum")
    Coefficients(c=1.0, total=4.0)
    """
    try:
        entry = REDUCTIONS[reduction]
    except KeyError:
        raise ValueError(
            f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}."
        ) from None
    return Coefficients(*entry.coefficients(sample_weight, n_samples))
