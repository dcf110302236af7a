"""The gradient noise scale's two terms at one step: the numpy specification.

A step of ``B >= 2`` rows reduces per-example terms ``t_i = k c_i g_i``,
each an estimate of the objective's gradient ``G`` (``c_i`` the reduction's
coefficient without the optimizer's scale, ``g_i`` example i's loss gradient,
``k = B`` for 'mean' and 'unbiased', ``k = n / S`` for 'sum': ``t_i = g_i``
for unit weights; for 'unbiased' under Poisson batches ``k`` is their
expected size ``q n``, the divisor of its ``c_i``). With their mean
``G_B`` and ``m = (1/B) sum_i ||t_i||^2``, McCandlish et al. (2018)
estimate, from the batch sizes 1 and B::

    |G|^2     ~ (B ||G_B||^2 - m) / (B - 1)
    tr(Sigma) ~ B (m - ||G_B||^2) / (B - 1)

Both are unbiased for i.i.d. examples. For a batch drawn without
replacement from ``n`` rows the first has mean ``|G|^2 - tr(Sigma) / n``
and the second ``tr(Sigma)`` (the rows' sample covariance, divisor
``n - 1``): the quantities of
:func:`~skbatchnet.diagnostics.gradient_noise_scale`'s
``method='population'``. The compiled loop restates this module in
``_noise_scale.pxd``; the epoch adds the estimates up, and
:class:`~skbatchnet._progress.Progress` divides the sums.
"""

import numpy as np

from .per_example import per_example_gradient_norms

__all__ = ["step_estimates"]


def step_estimates(network, X, Y, coefficients, grad, *, step, scale, data):
    """``(|G|^2 estimate, tr(Sigma) estimate)`` of one step, or None.

    ``grad`` is the step's reduced gradient times ``scale`` with the
    penalty's part, ``(alpha / S) sum_i c_i W``, included (as
    :meth:`~skbatchnet.backprop.Network.gradient` returns it); the penalty
    is the same for every example and is taken out. None for fewer than two
    rows.
    """
    n = X.shape[0]
    if n < 2:
        return None
    c, c_total = coefficients
    k = float(n)
    if step.reduction == "sum":
        k = 1.0 / data.row_weight
    elif step.reduction == "unbiased" and step.expected_rows is not None:
        k = float(step.expected_rows)  # Poisson: c_i divides by q n, not by n
    data_term = grad.astype(np.float64)
    if step.alpha:
        W = network.parameters[: network.n_coefs].astype(np.float64)
        data_term[: network.n_coefs] -= (step.alpha * c_total / data.total) * W
    mean2 = float(data_term @ data_term) * (k / (n * scale)) ** 2
    norms = per_example_gradient_norms(network, X, Y).astype(np.float64)
    terms = np.broadcast_to(np.asarray(c, np.float64) * k / scale, (n,)) * norms
    m = float(terms @ terms) / n
    return (n * mean2 - m) / (n - 1), n * (m - mean2) / (n - 1)
