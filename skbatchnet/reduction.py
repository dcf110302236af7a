"""The reduction: how per-example gradients become one minibatch gradient.

Every step of training follows ``sum_i c_i g_i`` over the batch, with the
coefficients ``c_i`` given here. Because the result is linear in the
per-example gradients, the backward pass applies ``c_i`` to each example's
output error once (with clipping, to every layer's error once the norms are
known) and then needs one matrix product per layer for the whole
batch (see :mod:`skbatchnet.backprop`).

A reduction is judged by what its step estimates, for a batch ``B`` drawn at
random from a training set of ``n`` rows with weights ``s_i`` of total ``S``:

- ``'unbiased'`` divides the batch's weighted sum by the *expected* batch
  weight ``E[sum_B s_i]`` (``|B| S / n`` for a batch drawn without
  replacement), so its step is an unbiased estimate of ``grad E`` under any
  weights;
- ``'sum'`` is an unbiased estimate of ``E[sum_B s_i] grad E``, under any
  weights;
- ``'mean'`` divides by the batch's *own* weight ``sum_B s_i``, as
  scikit-learn does. That is a ratio of two random sums: unbiased for equal
  weights, and under unequal weights its fixed point moves with the batch
  size (at batch 1 the weights cancel). For a whole-set batch ``'mean'`` and
  ``'unbiased'`` give ``grad E`` exactly, and ``'sum'`` gives ``S grad E``.

Under Poisson sampling (:class:`~skbatchnet.batching.PoissonBatcher`) a
batch's size and weight are random, and under DP noise they are private. The
expected batch weight is then ``q S``; ``'unbiased'`` divides by it, ``'sum'``
takes its penalty at it, and both step on every batch, empty ones included.
Their divisors are public constants, which is what DP-SGD's noise needs
(:func:`noise_std`); ``'mean'``'s is the batch's own weight.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._codes import ReductionCode

__all__ = [
    "REDUCTIONS",
    "Coefficients",
    "Reduction",
    "noise_std",
    "reduction_coefficients",
]


class Coefficients(NamedTuple):
    """The coefficients ``c_i`` of a reduction and their sum.

    Attributes
    ----------
    c : float or ndarray of shape (n_samples,)
        A scalar when every example has the same coefficient.
    total : float
        The factor of the penalty term ``(alpha / S) W`` in the step:
        ``sum_i c_i`` for ``'mean'`` and ``'sum'``, and its expectation, 1,
        for ``'unbiased'``.
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


def _mean_coefficients(sample_weight, n_samples, expected_weight, poisson):
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


def _sum_coefficients(sample_weight, n_samples, expected_weight, poisson):
    c = 1.0 if sample_weight is None else sample_weight
    if poisson:  # the batch's weight is random: the penalty at its expectation
        return c, float(expected_weight)
    if sample_weight is None:
        return c, float(n_samples)
    return c, float(np.sum(sample_weight, dtype=np.float64))


def _unbiased_coefficients(sample_weight, n_samples, expected_weight, poisson):
    if sample_weight is None and expected_weight is None:
        return 1.0 / n_samples, 1.0
    if expected_weight is None:
        # The batch taken as the whole set, whose weight is its expectation
        # (summed in float64: float32 weights can sum past float32's range).
        expected_weight = float(np.sum(sample_weight, dtype=np.float64))
        if not expected_weight > 0:
            raise ValueError(
                "The 'unbiased' reduction of a batch taken as the whole set "
                "divides by its total sample weight, which is 0 here. Pass "
                "expected_weight, or give the batch a positive weight."
            )
    if not expected_weight > 0:
        raise ValueError(
            "The 'unbiased' reduction divides by the expected batch weight, "
            f"which is {expected_weight} here. Pass expected_weight > 0 (the "
            "batch's row count times S / n for a batch drawn without "
            "replacement)."
        )
    inverse = 1.0 / expected_weight
    if sample_weight is None:
        return inverse, 1.0
    # The penalty enters as its expectation: E[sum_B c_i] = 1.
    return sample_weight * inverse, 1.0


@dataclass(frozen=True)
class Reduction:
    """A reduction: its coefficients and its compiled kernel.

    Attributes
    ----------
    name : str
        The registry key, the estimators' ``gradient_reduction`` value.
    coefficients : callable
        ``coefficients(sample_weight, n_samples, expected_weight, poisson)``
        returns ``(c, total)`` as :func:`reduction_coefficients` documents
        them.
    code : ReductionCode or None
        The compiled loop's kernel for it; None trains on the numpy path only.
    steps_without_weight : bool
        Whether a batch of zero total weight still takes a step, of the
        penalty alone. ``'unbiased'`` does, since that is its step's value
        for such a batch and skipping it would bias the penalty; ``'mean'``
        has no value there and ``'sum'``'s would be zero, so they skip it.
        A batch without rows takes no step, except under Poisson sampling.
    public_divisor : bool
        Whether the step divides the batch's sum by a constant rather than
        by the batch's own weight. Such a reduction steps on every Poisson
        batch, empty or weightless ones included (the step's expectation
        counts them), and can carry DP noise (:func:`noise_std`).
    """

    name: str
    coefficients: Callable
    code: ReductionCode | None = None
    steps_without_weight: bool = False
    public_divisor: bool = True


REDUCTIONS = {
    r.name: r
    for r in (
        Reduction("mean", _mean_coefficients, ReductionCode.MEAN, public_divisor=False),
        Reduction("sum", _sum_coefficients, ReductionCode.SUM),
        Reduction(
            "unbiased",
            _unbiased_coefficients,
            ReductionCode.UNBIASED,
            steps_without_weight=True,
        ),
    )
}


def reduction_coefficients(
    sample_weight, n_samples, reduction="mean", *, expected_weight=None, poisson=False
):
    """Coefficients ``c_i`` such that the reduced gradient is ``sum_i c_i g_i``.

    This is the one place where per-example gradients ``g_i`` become a
    minibatch gradient:

    - ``'mean'``: ``c_i = s_i / sum_j s_j``, so the step follows
      ``sum_i s_i g_i / sum_i s_i``. For a batch of ``B`` rows drawn
      uniformly without replacement (as a shuffled epoch draws them) from a
      training set of *equal* weights, it is an unbiased estimate of
      ``grad E``, the gradient of the whole-set objective. With unequal
      weights it is a ratio of two random sums (a ratio estimator): it is
      biased, and its fixed point depends on the batch size (at ``B = 1``
      the weights cancel and training follows the unweighted objective),
      except for the whole set, where it is ``grad E`` exactly;
    - ``'sum'``: ``c_i = s_i``, so the step follows ``sum_i s_i g_i`` and grows
      with the batch (the linear learning-rate scaling rule). For such a
      batch it is an unbiased estimate of ``B (S / n) grad E`` under any
      weights of total ``S`` over ``n`` rows (``B grad E`` with unit
      weights);
    - ``'unbiased'``: ``c_i = s_i / E[sum_B s_j]``, the batch's weighted sum
      divided by the *expected* batch weight ``expected_weight`` (``B S /
      n`` for such a batch). The step is an unbiased estimate of ``grad E``
      under any weights, equals ``'mean'`` for unit weights, and is
      ``grad E`` for a whole-set batch. Its penalty factor ``total`` is the
      expectation of ``sum_i c_i``, 1, so the penalty ``(alpha / S) W``
      enters each step exactly.

    Without sample weights ``s_i = 1``. Under Poisson sampling
    (``poisson=True``) the expected batch weight is ``q S``, and ``'sum'``'s
    penalty factor is that expectation rather than the batch's own weight.

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative weights of the examples in the batch.
    n_samples : int
        Number of examples in the batch.
    reduction : {'mean', 'sum', 'unbiased'}, default='mean'
        How per-example gradients are combined.
    expected_weight : float, default=None
        ``E[sum_B s_i]``, the expected total weight of a batch like this one;
        read by ``'unbiased'`` only. It belongs to how batches are drawn, not
        to the batch: ``n_samples * S / n`` for a batch drawn without
        replacement from ``n`` rows of total weight ``S``. None takes the
        batch as the whole set: its own total weight (``n_samples`` without
        weights).
    poisson : bool, default=False
        Whether the batch was drawn by Poisson sampling; ``expected_weight``
        is then required by ``'sum'`` and ``'unbiased'``.

    Returns
    -------
    coefficients : Coefficients
        ``(c, total)``: ``c`` is a float when every example has the same
        coefficient, else an ndarray of shape (n_samples,); ``total``
        multiplies the penalty term ``(alpha / S) W`` of the reduced
        gradient: ``sum_i c_i`` for ``'mean'`` (1) and ``'sum'`` (the batch's
        total weight), and its expectation 1 for ``'unbiased'``.

    Examples
    --------
    >>> import numpy as np
    >>> reduction_coefficients(np.array([1.0, 3.0]), 2, "mean")
    Coefficients(c=array([0.25, 0.75]), total=1.0)
    >>> reduction_coefficients(None, 4, "sum")
    Coefficients(c=1.0, total=4.0)

    Two rows drawn from a set of 10 rows of total weight 40 (an expected
    batch weight of 2 * 40 / 10 = 8):

    >>> reduction_coefficients(np.array([1.0, 3.0]), 2, "unbiased", expected_weight=8.0)
    Coefficients(c=array([0.125, 0.375]), total=1.0)
    """
    try:
        entry = REDUCTIONS[reduction]
    except KeyError:
        raise ValueError(
            f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}."
        ) from None
    if poisson and entry.public_divisor and expected_weight is None:
        raise ValueError(
            "Under Poisson sampling the reduction needs expected_weight, the "
            "expected batch weight q S."
        )
    return Coefficients(
        *entry.coefficients(sample_weight, n_samples, expected_weight, poisson)
    )


def noise_std(reduction, noise_multiplier, max_norm, expected_weight):
    """The standard deviation of DP-SGD's noise on the reduced gradient.

    DP-SGD adds ``N(0, sigma^2 C^2 I)`` to the batch's sum of clipped,
    weighted gradients ``sum_B s_i clip_C(g_i)`` (whose sensitivity to one
    example of weight at most 1 is ``C``), then applies the reduction's
    divisor. The noise on the reduced gradient is therefore ``sigma C``
    times the coefficient of one unit of weight: ``sigma C / (q S)`` for
    ``'unbiased'``, ``sigma C`` for ``'sum'``. ``'mean'`` divides by the
    batch's own weight, which the noise does not hide, and is refused.

    Parameters
    ----------
    reduction : {'sum', 'unbiased'}
    noise_multiplier : float
        ``sigma``.
    max_norm : float
        ``C``, the clipping norm.
    expected_weight : float
        ``q S``, the expected weight of a Poisson batch.

    Returns
    -------
    std : float

    Examples
    --------
    >>> noise_std("unbiased", 1.0, 2.0, expected_weight=4.0)
    0.5
    >>> noise_std("sum", 1.0, 2.0, expected_weight=4.0)
    2.0
    """
    entry = REDUCTIONS[reduction]
    if not entry.public_divisor:
        raise ValueError(
            f"DP noise cannot be added under the {reduction!r} reduction, which "
            "divides by the batch's own weight: the noise does not hide it. "
            "Use gradient_reduction='unbiased' (or 'sum')."
        )
    unit = entry.coefficients(None, 1, expected_weight, True)[0]
    return float(noise_multiplier) * float(max_norm) * float(unit)
