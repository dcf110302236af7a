"""A step's settings, and what a step of the numpy tier adds to the gradient.

:class:`Step` is what a minibatch step needs beyond its rows: the penalty,
the reduction, clipping, DP-SGD's noise and how batches are drawn (epoch
batches without replacement, or Poisson batches). It answers the questions
both tiers ask of them: a batch's expected weight, whether a batch takes a
step, and the noise's standard deviation. :class:`GaussianNoise` is that
noise as the numpy tier draws it; the compiled loop draws the same numbers
(``_noise.pxd``).
"""

from dataclasses import dataclass

import numpy as np

from .reduction import REDUCTIONS, noise_std

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
    to (None: not clipped), DP-SGD's ``noise_multiplier`` (0: no noise), and
    ``expected_rows``, the expected size ``q n`` of Poisson batches (None:
    an epoch's batches, drawn without replacement).
    """

    alpha: float
    reduction: str
    max_gradient_norm: float | None = None
    noise_multiplier: float = 0.0
    expected_rows: float | None = None

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
    normals from ``generator``, one per parameter, in the order and rounding
    of the compiled loop's ``_noise.pxd``."""

    def __init__(self, generator, std):
        self.generator, self.std = generator, std

    def add_to(self, grad, scale):
        coef = self.std * scale  # as the loop multiplies, in float64
        grad += (coef * self.generator.standard_normal(grad.size)).astype(
            grad.dtype, copy=False
        )
