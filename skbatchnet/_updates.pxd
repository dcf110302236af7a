# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""The optimizers' and the weight average's passes over parameter vectors,
and one optimizer step over a network's parameters (``network_update``).

Inline, for the epoch (_epoch.pyx, which runs ``network_update`` after each
batch) and its AVX2 twin. The per-parameter formulas are the solvers'
registry kernels (_kernels.pxd); these loops run them over a vector, adding
the L2 penalty's share of the weights and summing the new weights' squares as
they are written.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt

cimport skbatchnet._kernels as K
from skbatchnet._tiles cimport cut, parts


cdef struct Shape:
    # The network's layout in the parameter vector: all weights, each
    # (fan_in, fan_out) row-major, then all biases (Network.parameters).
    Py_ssize_t n_layers  # weight matrices
    Py_ssize_t n_coefs
    Py_ssize_t n_params
    Py_ssize_t n_features
    Py_ssize_t n_outputs
    const Py_ssize_t* units  # n_layers + 1 entries, input first
    const Py_ssize_t* coef_offsets  # start of each weight matrix
    const Py_ssize_t* unit_offsets  # start of each layer's units, input excluded


cdef struct Solver:
    int code  # SolverCode
    int nesterov
    double learning_rate  # SGD's rate, Adam's initial rate
    double momentum
    double beta_1
    double beta_2
    double epsilon


cdef inline double square(floating x) noexcept nogil:
    return <double>x * x


cdef inline double sgd_pass(
    floating* p, floating* v, const floating* g, floating a, Py_ssize_t size,
    floating decay, floating mu, bint nesterov, bint penalized
) noexcept nogil:
    """SGD on ``size`` parameters of gradient ``a * g``, plus ``decay * p``
    for ``penalized`` ones, whose sum of squares after the step it returns
    (else 0): the next step's penalty, summed as the weights are written.

    ``a`` is 1 (exactly, so no rounding) except for one row of an outer
    product. One loop per case, so that each is a straight vectorizable pass;
    the penalized ones take four elements at a time into four sums, which
    the compiler packs into vectors as it does the update.
    """
    cdef Py_ssize_t j, m = size - size % 4
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    if penalized and nesterov:
        for j in range(0, m, 4):
            s0 += square(K.sgd_nesterov(p + j, v + j, a * g[j] + decay * p[j], mu))
            s1 += square(K.sgd_nesterov(
                p + j + 1, v + j + 1, a * g[j + 1] + decay * p[j + 1], mu))
            s2 += square(K.sgd_nesterov(
                p + j + 2, v + j + 2, a * g[j + 2] + decay * p[j + 2], mu))
            s3 += square(K.sgd_nesterov(
                p + j + 3, v + j + 3, a * g[j + 3] + decay * p[j + 3], mu))
        for j in range(m, size):
            s0 += square(K.sgd_nesterov(p + j, v + j, a * g[j] + decay * p[j], mu))
    elif penalized:
        for j in range(0, m, 4):
            s0 += square(
                K.sgd_heavy_ball(p + j, v + j, a * g[j] + decay * p[j], mu))
            s1 += square(K.sgd_heavy_ball(
                p + j + 1, v + j + 1, a * g[j + 1] + decay * p[j + 1], mu))
            s2 += square(K.sgd_heavy_ball(
                p + j + 2, v + j + 2, a * g[j + 2] + decay * p[j + 2], mu))
            s3 += square(K.sgd_heavy_ball(
                p + j + 3, v + j + 3, a * g[j + 3] + decay * p[j + 3], mu))
        for j in range(m, size):
            s0 += square(
                K.sgd_heavy_ball(p + j, v + j, a * g[j] + decay * p[j], mu))
    elif nesterov:
        for j in range(size):
            K.sgd_nesterov(p + j, v + j, a * g[j], mu)
    else:
        for j in range(size):
            K.sgd_heavy_ball(p + j, v + j, a * g[j], mu)
    return (s0 + s1) + (s2 + s3)


cdef inline double adam_pass(
    floating* p, floating* m, floating* u, const floating* h, floating a,
    Py_ssize_t size, floating decay, floating b1, floating b2, floating neg_lr,
    floating eps, bint penalized
) noexcept nogil:
    """Adam on ``size`` parameters of scaled gradient ``a * h``, plus
    ``decay * p`` for ``penalized`` ones, whose sum of squares after the step
    it returns (else 0); ``a`` and the loops as in sgd_pass."""
    cdef Py_ssize_t j, m4 = size - size % 4
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    if penalized:
        for j in range(0, m4, 4):
            s0 += square(K.adam_update(
                p + j, m + j, u + j, a * h[j] + decay * p[j], b1, b2, neg_lr, eps))
            s1 += square(K.adam_update(
                p + j + 1, m + j + 1, u + j + 1, a * h[j + 1] + decay * p[j + 1],
                b1, b2, neg_lr, eps))
            s2 += square(K.adam_update(
                p + j + 2, m + j + 2, u + j + 2, a * h[j + 2] + decay * p[j + 2],
                b1, b2, neg_lr, eps))
            s3 += square(K.adam_update(
                p + j + 3, m + j + 3, u + j + 3, a * h[j + 3] + decay * p[j + 3],
                b1, b2, neg_lr, eps))
        for j in range(m4, size):
            s0 += square(K.adam_update(
                p + j, m + j, u + j, a * h[j] + decay * p[j], b1, b2, neg_lr, eps))
    else:
        for j in range(size):
            K.adam_update(p + j, m + j, u + j, a * h[j], b1, b2, neg_lr, eps)
    return (s0 + s1) + (s2 + s3)


cdef inline void average_pass(
    floating* mean, const floating* p, Py_ssize_t size, floating count
) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(size):
        K.average_update(mean + j, p[j], count)


cdef inline void adam_factors(
    const Solver* solver, long t, floating* neg_lr, floating* eps
) noexcept nogil:
    """Adam's step ``t``: the bias correction folded into the rate, with
    u = v / k (_optimizers.Adam.step)."""
    cdef double root_k = sqrt((1 - solver.beta_2) / (1 - solver.beta_1) ** 2)
    neg_lr[0] = <floating>(
        -(K.adam_rate(solver.learning_rate, solver.beta_1, solver.beta_2, t) / root_k)
    )
    eps[0] = <floating>(solver.epsilon / root_k)


cdef inline double solver_pass(
    const Solver* solver, floating* p, floating* s1, floating* s2,
    const floating* g, Py_ssize_t size, floating decay, floating neg_lr,
    floating eps, bint penalized
) noexcept nogil:
    """The solver's pass (sgd_pass or adam_pass) over ``size`` parameters."""
    if solver.code == K.SGD:
        return sgd_pass(p, s1, g, 1, size, decay, <floating>solver.momentum,
                        solver.nesterov, penalized)
    elif solver.code == K.ADAM:
        return adam_pass(p, s1, s2, g, 1, size, decay, <floating>solver.beta_1,
                         <floating>solver.beta_2, neg_lr, eps, penalized)
    return 0


cdef inline double update_on_threads(
    const Shape* shape, const Solver* solver, bint penalized, floating* params,
    floating* grad, double decay, floating* state1, floating* state2, long t,
    floating* mean, floating count, double* norm_parts, Py_ssize_t piece,
    int n_threads
) noexcept nogil:
    """One optimizer step over the whole gradient, the weights in pieces of
    at most ``piece`` parameters and the biases in one, shared by threads;
    returns ||W||^2 after it when ``penalized``, else 0. With ``mean``, the
    average takes the new parameters as its ``count``-th point.

    The pieces depend on the network alone and their sums of squares are
    added in order (``norm_parts``): the same bits on any number of threads.
    """
    cdef Py_ssize_t nc = shape.n_coefs, it
    cdef Py_ssize_t pieces = parts(nc, piece) if nc > 0 else 0
    cdef floating neg_lr = 0, eps = 0
    cdef double norm = 0
    if solver.code == K.ADAM:
        adam_factors(solver, t, &neg_lr, &eps)
    if n_threads > 1:
        with parallel(num_threads=n_threads):
            for it in prange(pieces + 1, schedule="static"):
                _piece(shape, solver, penalized, params, grad, decay, state1, state2,
                       mean, count, norm_parts, it, pieces, neg_lr, eps)
    else:  # the same pieces, without starting the OpenMP team
        for it in range(pieces + 1):
            _piece(shape, solver, penalized, params, grad, decay, state1, state2,
                   mean, count, norm_parts, it, pieces, neg_lr, eps)
    for it in range(pieces):
        norm += norm_parts[it]
    return norm if penalized else 0


cdef inline void _piece(
    const Shape* shape, const Solver* solver, bint penalized, floating* params,
    floating* grad, double decay, floating* state1, floating* state2,
    floating* mean, floating count, double* norm_parts, Py_ssize_t it,
    Py_ssize_t pieces, floating neg_lr, floating eps
) noexcept nogil:
    """Piece ``it`` of update_on_threads: weights, or (the last) the biases."""
    cdef Py_ssize_t nc = shape.n_coefs, lo, hi
    if it < pieces:
        lo, hi = cut(it, nc, pieces), cut(it + 1, nc, pieces)
        norm_parts[it] = solver_pass(
            solver, params + lo, state1 + lo, state2 + lo if state2 != NULL else NULL,
            grad + lo, hi - lo, <floating>decay, neg_lr, eps, penalized,
        )
    else:  # the biases, not decayed
        lo, hi = nc, shape.n_params
        solver_pass(
            solver, params + lo, state1 + lo, state2 + lo if state2 != NULL else NULL,
            grad + lo, hi - lo, 0, neg_lr, eps, False,
        )
    if mean != NULL:
        average_pass(mean + lo, params + lo, hi - lo, count)


cdef inline double network_update(
    const Shape* shape, const Solver* solver, bint penalized, floating* params,
    floating* grad, double decay, floating* state1, floating* state2, long t,
    floating* x_row, floating* acts, floating* deltas
) noexcept nogil:
    """One optimizer step after a batch of one row ``x_row``; returns
    ||W||^2 after it when ``penalized`` (the next step's penalty), else 0.

    ``grad`` holds the scaled bias gradient; the weights' share of the
    penalty, ``decay * W``, joins it here (biases are not decayed). The
    weight gradients are not in ``grad``: ``_pass.pxd`` leaves them out
    (without noise to add to them), and row i of
    layer l's is ``a_i * delta`` (the layer's input times its delta), formed
    here as the update reads it, which saves writing and reading back a
    gradient as large as the network. The squares of the new weights are
    summed as they are written, rather than in a pass of their own.
    """
    cdef Py_ssize_t nc = shape.n_coefs, nb = shape.n_params - shape.n_coefs
    cdef Py_ssize_t l, i, fan_in, fan_out, off
    cdef bint sgd = solver.code == K.SGD, adam = solver.code == K.ADAM
    cdef bint nesterov = solver.nesterov
    cdef double norm = 0
    cdef floating neg_lr = 0, eps = 0, dec = <floating>decay
    cdef floating mu = <floating>solver.momentum
    cdef floating b1 = <floating>solver.beta_1, b2 = <floating>solver.beta_2
    cdef floating* A
    cdef floating* delta
    if adam:
        adam_factors(solver, t, &neg_lr, &eps)

    # The solver's branch stays outside the loops over rows of weights.
    for l in range(shape.n_layers):
        fan_in, fan_out = shape.units[l], shape.units[l + 1]
        A = x_row if l == 0 else acts + shape.unit_offsets[l - 1]
        delta = deltas + shape.unit_offsets[l]
        off = shape.coef_offsets[l]
        if sgd:
            for i in range(fan_in):
                norm += sgd_pass(params + off, state1 + off, delta, A[i],
                                 fan_out, dec, mu, nesterov, penalized)
                off += fan_out
        elif adam:
            for i in range(fan_in):
                norm += adam_pass(params + off, state1 + off, state2 + off,
                                  delta, A[i], fan_out, dec, b1, b2, neg_lr,
                                  eps, penalized)
                off += fan_out
    # The biases.
    if sgd:
        sgd_pass(params + nc, state1 + nc, grad + nc, 1, nb, 0, mu, nesterov, False)
    elif adam:
        adam_pass(params + nc, state1 + nc, state2 + nc, grad + nc, 1, nb, 0, b1,
                  b2, neg_lr, eps, False)
    return norm
