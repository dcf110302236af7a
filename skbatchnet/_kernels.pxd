# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""Per-point kernels of the compiled training loop (see _loop.pyx).

Each function restates, for one value or one row, the formula of the numpy
specification it mirrors (_activations.py, _losses.py, _optimizers.py), in the
same order of operations, so that the two paths agree to rounding. They are
inline and free of Python, so the loops calling them stay vectorizable.
"""

from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf
from libc.math cimport sqrt, sqrtf

# Codes of the activations, losses, reductions and solvers: the Python side
# maps the estimators' names to them (ACTIVATION_CODES etc. in _loop.pyx).
cdef enum:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3

cdef enum:
    SQUARED_ERROR = 0
    POISSON = 1
    BINARY_LOG_LOSS = 2
    LOG_LOSS = 3

cdef enum:
    MEAN = 0
    SUM = 1

cdef enum:
    SGD = 0
    ADAM = 1


# -- elementary functions in the dtype's own precision -------------------------

cdef inline floating f_exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating f_log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating f_log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating f_tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating f_sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# -- hidden activations: f(z), and delta * f'(z) written through a = f(z) ------

cdef inline floating logistic(floating z) noexcept nogil:
    # scipy's expit; exp(-z) = inf gives 0, never a NaN.
    return 1 / (1 + f_exp(-z))


cdef inline floating relu(floating z) noexcept nogil:
    # np.maximum(z, 0): a NaN stays a NaN, so divergence stays visible.
    return 0 if z < 0 else z


cdef inline floating logistic_derivative(floating a, floating d) noexcept nogil:
    # delta *= A; delta *= 1 - A: two roundings, in that order.
    return (d * a) * (1 - a)


cdef inline floating tanh_derivative(floating a, floating d) noexcept nogil:
    return d * (1 - a * a)


cdef inline floating relu_derivative(floating a, floating d) noexcept nogil:
    # delta * (A > 0): a product, not a select, as numpy multiplies by the mask.
    return d * (1 if a > 0 else 0)


# -- output losses: error (f(z) - y) * c into out, returns loss_i ---------------

cdef inline floating xlogy_minus_y(floating y) noexcept nogil:
    # xlogy(y, y) - y, the Poisson loss's constant.
    if y == 0:
        return -y
    return y * f_log(y) - y


cdef inline floating logaddexp0(floating z) noexcept nogil:
    # np.logaddexp(0, z), as numpy writes it: the larger argument plus the
    # log1p of the exponential of minus the gap.
    if z == 0:
        return <floating>0.6931471805599453
    if z > 0:
        return z + f_log1p(f_exp(-z))
    if z < 0:
        return f_log1p(f_exp(z))
    return z  # NaN


cdef inline floating squared_error_row(
    const floating* z, const floating* y, floating* out, floating c, Py_ssize_t k
) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating r, total = 0
    for j in range(k):
        r = z[j] - y[j]
        total += r * r
        out[j] = r * c
    return <floating>0.5 * total


cdef inline floating poisson_row(
    const floating* z, const floating* y, floating* out, floating c, Py_ssize_t k
) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating p, predicted = 0, cross = 0, constant = 0
    for j in range(k):
        p = f_exp(z[j])
        predicted += p
        cross += y[j] * z[j]
        constant += xlogy_minus_y(y[j])
        out[j] = (p - y[j]) * c
    return (predicted - cross) + constant


cdef inline floating binary_log_loss_row(
    const floating* z, const floating* y, floating* out, floating c, Py_ssize_t k
) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating soft = 0, cross = 0
    for j in range(k):
        soft += logaddexp0(z[j])
        cross += y[j] * z[j]
        out[j] = (logistic(z[j]) - y[j]) * c
    return soft - cross


cdef inline floating log_loss_row(
    const floating* z, const floating* y, floating* out, floating c, Py_ssize_t k
) noexcept nogil:
    # Softmax from the row maximum, as _losses._normalized_exp; the loss is
    # log sum exp(z - m) + m - sum y z.
    cdef Py_ssize_t j
    cdef floating m = z[0], total = 0, cross = 0
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    for j in range(k):
        out[j] = f_exp(z[j] - m)
        total += out[j]
        cross += y[j] * z[j]
    for j in range(k):
        out[j] = (out[j] / total - y[j]) * c
    return (f_log(total) + m) - cross


# -- optimizer and averaging updates of one parameter --------------------------

cdef inline floating sgd_nesterov(
    floating* p, floating* v, floating g, floating mu
) noexcept nogil:
    # g is lr * gradient; the state is mu * v (see _optimizers.SGD):
    # v <- (v - g) mu, then the step v - g. Returns the new p.
    cdef floating v_new = (v[0] - g) * mu
    cdef floating p_new = p[0] + (v_new - g)
    v[0] = v_new
    p[0] = p_new
    return p_new


cdef inline floating sgd_heavy_ball(
    floating* p, floating* v, floating g, floating mu
) noexcept nogil:
    # v <- mu v - g, then the step v. Returns the new p.
    cdef floating v_new = v[0] * mu - g
    cdef floating p_new = p[0] + v_new
    v[0] = v_new
    p[0] = p_new
    return p_new


cdef inline floating adam_update(
    floating* p, floating* m, floating* u, floating h,
    floating b1, floating b2, floating neg_lr, floating eps
) noexcept nogil:
    # h is (1 - b1) * gradient; u = v / k (see _optimizers.Adam). Returns the
    # new p.
    cdef floating m_new = m[0] * b1 + h
    cdef floating u_new = u[0] * b2 + h * h
    cdef floating p_new = p[0] + (m_new * neg_lr) / (f_sqrt(u_new) + eps)
    m[0] = m_new
    u[0] = u_new
    p[0] = p_new
    return p_new


cdef inline void average_update(
    floating* mean, floating p, floating count
) noexcept nogil:
    # WeightAverage.update: m += (w - m) / k.
    mean[0] = mean[0] + (p - mean[0]) / count
