"""A step's settings, and what a step of the numpy tier adds to the gradient.

:class:`Step` is what a minibatch step needs beyond its rows: the penalty,
the reduction, clipping, DP-SGD's noise and how batches are drawn (epoch
batches without replacement, or Poisson batches). It answers the questions
both tiers ask of them: a batch's expected weight, whether a batch takes a
step, and the noise's standard deviation; and, for data that reduce a batch
in Python (in memory, or from a cluster's partial sums), its coefficients,
so that both decide a step in one place. :class:`GaussianNoise` is that
noise as the numpy tier draws it; the compiled loop draws the same numbers
(``_noise.pxd``).
"""

from dataclasses import dataclass

import numpy as np

from ._gaussian import standard_normal
from .reduction import REDUCTIONS, noise_std, reduction_coefficients

__all__ = ["GaussianNoise", "Step", "penalty_step"]


def penalty_step(network, c_total, alpha, total):
    """The loss and gradient of a step without rows: the penalty's alone."""
    grad = np.zeros_like(network.parameters)
    if not alpha:
        return 0.0, grad
    W = network.parameters[: network.n_coefs]
    grad[: network.n_coefs] = W * (alpha * c_total / total)
    return 0.5 * alpha * network.penalty() / total, grad


@dataclass(frozen=True)
class Step:
    """What a step needs beyond the batch.

    The penalty, the reduction, the norm each example's gradient is clipped
    to (None: not clipped), DP-SGD's ``noise_multiplier`` (0: no noise),
    ``expected_rows``, the expected size ``q n`` of Poisson batches (None:
    an epoch's batches, drawn without replacement), and ``track_noise``:
    estimate the gradient noise scale's terms at each step of two rows or
    more (``_noise_scale.pxd``; never with clipping or noise).
    """

    alpha: float
    reduction: str
    max_gradient_norm: float | None = None
    noise_multiplier: float = 0.0
    expected_rows: float | None = None
    track_noise: bool = False

    def expected_weight(self, n, weight_per_row):
        """``E[sum_B s_i]`` of a batch of ``n`` rows: ``n S / N`` for rows
        drawn without replacement, ``q S`` under Poisson sampling."""
        rows = n if self.expected_rows is None else self.expected_rows
        return rows * weight_per_row

    def takes_step(self, n, weight):
        """Whether a batch of ``n`` rows and total ``weight`` takes a step.

        Under Poisson sampling every batch does, unless the reduction divides
        by the batch's own weight (``'mean'``); else a batch with rows does,
        if it has weight or its reduction steps on the penalty alone.
        """
        entry = REDUCTIONS[self.reduction]
        if self.expected_rows is not None and entry.public_divisor:
            return True
        return n > 0 and (weight > 0 or entry.steps_without_weight)

    def coefficients(self, n, weight, row_weight, sample_weight=None, scale=1.0):
        """The reduction coefficients of a batch times ``scale``, or None if
        it takes no step (:meth:`takes_step`).

        The batch has ``n`` rows of total ``weight``, drawn from rows of
        expected weight ``row_weight`` each (``S / n`` when drawn from the
        whole set). With ``sample_weight``, the batch's weights, there is one
        coefficient per row. Without, the coefficient is that of one unit of
        weight, ``c_i = s_i c``: the form of a batch without weights, and of
        one whose weighted sum ``sum_B s_i g_i`` comes already added up (from
        a cluster's blocks, :mod:`skbatchnet._dask_data`). Under Poisson
        sampling the divisor and ``'sum'``'s penalty factor are the expected
        batch weight ``q S`` (:func:`~skbatchnet.reduction.reduction_coefficients`).
        """
        if not self.takes_step(n, weight):
            return None
        return reduction_coefficients(
            sample_weight,
            # Without per-row weights the batch's weight counts its units.
            n if sample_weight is not None else weight,
            self.reduction,
            expected_weight=self.expected_weight(n, row_weight),
            poisson=self.expected_rows is not None,
        ).scaled(scale)

    def noise_std(self, weight_per_row):
        """The noise's standard deviation on the reduced gradient
        (:func:`~skbatchnet.reduction.noise_std`); 0 without noise."""
        if not self.noise_multiplier:
            return 0.0
        return noise_std(
            self.reduction,
            self.noise_multiplier,
            self.max_gradient_norm,
            self.expected_weight(None, weight_per_row),
        )


class GaussianNoise:
    """DP-SGD's noise as the numpy tier draws it: ``std`` times standard
    normals from ``generator`` (``_gaussian.standard_normal``), one per
    parameter, in the order and rounding of the compiled loop's
    ``_noise.pxd``."""

    def __init__(self, generator, std):
        self.generator, self.std = generator, std

    def add_to(self, grad, scale):
        coef = self.std * scale  # as the loop multiplies, in float64
        z = standard_normal(self.generator.bit_generator, grad.size)
        grad += (coef * z).astype(grad.dtype, copy=False)
