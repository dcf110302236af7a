# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""The gradient noise scale's two terms, estimated at every step.

A step of ``B >= 2`` rows reduces per-example terms ``t_i``, each an
estimate of the objective's gradient ``G``: ``t_i = k c_i g_i`` with the
reduction's coefficient ``c_i`` (the optimizer's scale divided out) and
``k = B`` ('mean', 'unbiased'; for 'unbiased' under Poisson batches their
expected size ``q n``, the divisor of its ``c_i``) or ``k = n / S``
('sum'), so that every ``t_i`` is ``g_i`` for unit weights. From their mean ``G_B`` and
``m = (1/B) sum_i ||t_i||^2``, McCandlish et al.'s unbiased estimators
from the batch sizes 1 and B are::

    |G|^2     ~ (B ||G_B||^2 - m) / (B - 1)
    tr(Sigma) ~ B (m - ||G_B||^2) / (B - 1)

(for batches drawn without replacement the first one's mean is
``|G|^2 - tr(Sigma) / n``, :func:`~skbatchnet.diagnostics.gradient_noise_scale`'s
``method='population'``). ``||G_B||^2`` is read off the step's data
gradient before the penalty joins it, ``sum_i ||c_i g_i||^2`` off the
chunk's buffers (_clip_kernels.sum_of_row_squares); the epoch adds the
estimates up, and training divides the sums (skbatchnet._progress).
"""

from cython cimport floating

cimport skbatchnet._kernels as K
cimport skbatchnet._products as P
from ._plan cimport Config, Counters


cdef inline void track_step(
    const Config* cfg, Counters* out, const floating* grad, double squares,
    Py_ssize_t n, double scale
) noexcept nogil:
    """Add the estimates of a step of ``n`` rows whose data gradient, times
    ``scale``, is ``grad`` and whose rows' ``sum_i ||scale c_i g_i||^2`` is
    ``squares``; a step of fewer than two rows estimates nothing."""
    cdef double k, mean2, m
    if n < 2:
        return
    if cfg.reduction == K.SUM:
        k = 1.0 / cfg.weight_per_row
    elif cfg.reduction == K.UNBIASED and cfg.expected_rows > 0:
        k = cfg.expected_rows  # Poisson: c_i divides by q n, not by n
    else:
        k = <double>n
    # ||G_B||^2 with G_B = (k / B) sum_i c_i g_i, and m.
    mean2 = P.squared_norm_of(grad, cfg.shape.n_params) * (k / (n * scale)) ** 2
    m = squares * (k / scale) ** 2 / n
    out.noise_g2 += (n * mean2 - m) / (n - 1)
    out.noise_trace += n * (m - mean2) / (n - 1)
    out.noise_steps += 1
