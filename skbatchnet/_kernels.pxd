# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""The compiled code of each registry entry: activations, losses, solvers.

Each function restates, for one value or one row, the formula of the numpy
specification it mirrors (_activations.py, _losses.py, _optimizers.py), in the
same order of operations, so that the two paths agree to rounding. They are
inline and free of Python, so the loops calling them stay vectorizable. A
registry entry's code selects its kernel in a switch with one explicit arm
per code (bias_activation, derivative, output_row; the solvers' in
_updates.pxd).
"""

from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf
from libc.math cimport NAN, pow, sqrt, sqrtf

# The codes of skbatchnet/_codes.py, member for member (the registry entries
# carry them; tests/test_registries.py holds the two lists equal).
cdef enum ActivationCode:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3

cdef enum LossCode:
    SQUARED_ERROR = 0
    POISSON = 1
    BINARY_LOG_LOSS = 2
    LOG_LOSS = 3

cdef enum ReductionCode:
    MEAN = 0
    SUM = 1
    UNBIASED = 2

cdef enum SolverCode:
    SGD = 0
    ADAM = 1

cdef enum Status:
    OK = 0
    NONFINITE_LOSS = 1
    NONFINITE_WEIGHTS = 2
    INTERRUPTED = 3


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


# -- hidden activations --------------------------------------------------------
# An activation's two kernels are its arms in the two functions below: f(z)
# and delta * f'(z), the derivative written through a = f(z) as
# _activations.py writes it. The switch stays outside the loops.

cdef inline floating logistic(floating z) noexcept nogil:
    # scipy's expit; exp(-z) = inf gives 0, never a NaN.
    return 1 / (1 + f_exp(-z))


cdef inline void bias_activation(
    int activation, Py_ssize_t n, Py_ssize_t k, floating* A, floating* b
) noexcept nogil:
    """A = f(A + b), row by row."""
    cdef Py_ssize_t i, j
    cdef floating z
    cdef floating* row
    for i in range(n):
        row = A + i * k
        if activation == IDENTITY:
            for j in range(k):
                row[j] = row[j] + b[j]
        elif activation == LOGISTIC:
            for j in range(k):
                row[j] = logistic(row[j] + b[j])
        elif activation == TANH:
            for j in range(k):
                row[j] = f_tanh(row[j] + b[j])
        elif activation == RELU:
            # np.maximum(z, 0): a NaN stays a NaN, so divergence stays visible.
            for j in range(k):
                z = row[j] + b[j]
                row[j] = 0 if z < 0 else z


cdef inline void derivative(
    int activation, Py_ssize_t size, floating* A, floating* D
) noexcept nogil:
    """D *= f'(Z), written through A = f(Z)."""
    cdef Py_ssize_t i
    if activation == IDENTITY:
        return
    elif activation == LOGISTIC:
        # delta *= A; delta *= 1 - A: two roundings, in that order.
        for i in range(size):
            D[i] = (D[i] * A[i]) * (1 - A[i])
    elif activation == TANH:
        for i in range(size):
            D[i] = D[i] * (1 - A[i] * A[i])
    elif activation == RELU:
        # delta * (A > 0): a product, not a select, as numpy multiplies by
        # the mask.
        for i in range(size):
            D[i] = D[i] * (1 if A[i] > 0 else 0)


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


cdef inline floating output_row(
    int loss, const floating* z, const floating* y, floating* out,
    floating c, Py_ssize_t k
) noexcept nogil:
    """The loss of one row; its error (f(z) - y) * c into ``out``. The epoch
    plan admits only the codes below; any other would read as a diverged
    loss, never as a silent zero."""
    if loss == SQUARED_ERROR:
        return squared_error_row(z, y, out, c, k)
    elif loss == POISSON:
        return poisson_row(z, y, out, c, k)
    elif loss == BINARY_LOG_LOSS:
        return binary_log_loss_row(z, y, out, c, k)
    elif loss == LOG_LOSS:
        return log_loss_row(z, y, out, c, k)
    return NAN


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


cdef inline double adam_rate(
    double learning_rate, double beta_1, double beta_2, long t
) noexcept nogil:
    # Adam.advance: lr sqrt(1 - b2^t) / (1 - b1^t), in double as Python has it.
    return learning_rate * sqrt(1 - pow(beta_2, t)) / (1 - pow(beta_1, t))


cdef inline void average_update(
    floating* mean, floating p, floating count
) noexcept nogil:
    # WeightAverage.update: m += (w - m) / k.
    mean[0] = mean[0] + (p - mean[0]) / count
