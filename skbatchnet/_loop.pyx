# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""The compiled epoch: stochastic training on dense or CSR input without the GIL.

One call of :func:`run_epoch` runs every minibatch step of an epoch: gather
the batch's rows, forward pass, output error and loss, backward pass, the
optimizer's update and the weight average, then the next batch. Python gets
control back once per epoch (and, briefly, every few thousand steps to look
for Ctrl-C).

This module restates on purpose the math of the numpy specification
(:mod:`skbatchnet.backprop`, :mod:`skbatchnet.reduction`,
:mod:`skbatchnet._optimizers`, :mod:`skbatchnet._averaging`), in the same order
of operations, and is tested against it to rounding. It takes plain arrays and
scalars, never an estimator. Products go through scipy's BLAS; the per-point
formulas live in ``_kernels.pxd``.
"""

from collections import namedtuple

import numpy as np
import scipy.sparse

from cpython.exc cimport PyErr_CheckSignals
from cython cimport floating
from libc.math cimport isfinite, pow, sqrt
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

from . cimport _kernels as K

# GCC's and Clang's CPU check, which also asks the operating system whether it
# saves the AVX registers; other compilers build no AVX2 twin (setup.py).
cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    static int skbatchnet_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
    }
    #else
    static int skbatchnet_cpu_has_avx2(void) { return 0; }
    #endif
    """
    int skbatchnet_cpu_has_avx2() noexcept nogil

__all__ = [
    "ACTIVATION_CODES",
    "LOSS_CODES",
    "REDUCTION_CODES",
    "SOLVER_CODES",
    "EpochResult",
    "cpu_has_avx2",
    "epoch_workspace",
    "one_thread_product",
    "squared_norm",
    "run_epoch",
]


def cpu_has_avx2():
    """Whether this CPU, and the operating system, can run AVX2 instructions.

    Asked before importing ``skbatchnet._loop_avx2``, which would stop the
    process on a CPU without them.
    """
    return bool(skbatchnet_cpu_has_avx2())

ACTIVATION_CODES = {
    "identity": K.IDENTITY,
    "logistic": K.LOGISTIC,
    "tanh": K.TANH,
    "relu": K.RELU,
}
LOSS_CODES = {
    "squared_error": K.SQUARED_ERROR,
    "poisson": K.POISSON,
    "binary_log_loss": K.BINARY_LOG_LOSS,
    "log_loss": K.LOG_LOSS,
}
REDUCTION_CODES = {"mean": K.MEAN, "sum": K.SUM}
SOLVER_CODES = {"sgd": K.SGD, "adam": K.ADAM}

# Statuses of an epoch.
cdef enum:
    STATUS_OK = 0
    STATUS_NONFINITE_LOSS = 1  # at batch ``batch``; that batch took no step
    STATUS_NONFINITE_WEIGHTS = 2  # found after the epoch's last batch
    STATUS_INTERRUPTED = 3  # KeyboardInterrupt; the parameters are mid-epoch

OK = STATUS_OK
NONFINITE_LOSS = STATUS_NONFINITE_LOSS
NONFINITE_WEIGHTS = STATUS_NONFINITE_WEIGHTS
INTERRUPTED = STATUS_INTERRUPTED

EpochResult = namedtuple(
    "EpochResult",
    [
        "status",
        "batch",
        "loss_sum",
        "weight_sum",
        "seen",
        "steps",
        "n_averaged",
        "samples_seen",
    ],
)
EpochResult.__doc__ = """What one epoch did.

status : int
    OK (0), NONFINITE_LOSS (1), NONFINITE_WEIGHTS (2) or INTERRUPTED (3).
batch : int
    With a non-finite status, the 1-based number of the batch at fault,
    counting skipped zero-weight batches (as _base._run_epoch numbers them).
loss_sum, weight_sum : float
    Sum over the steps taken of ``weight * loss`` and of ``weight``; the
    epoch loss is their ratio.
seen : int
    Rows seen, including those of skipped zero-weight batches.
steps : int
    Optimizer steps taken (Adam's ``t`` advances by as many).
n_averaged, samples_seen : int
    The weight average's counters after the epoch.
"""

# Steps, and rows, between two looks for a pending Ctrl-C. Taking the GIL
# costs about as much as one step at batch size 1, so a look every few
# thousand steps is lost in the noise; the row bound makes large batches,
# whose steps are long, look every few steps, so that Ctrl-C is seen within
# about a second at any batch size.
_CHECK_STEPS = 2048
_CHECK_ROWS = 8192

# Products of at most this many multiply-adds skip BLAS, whose call costs
# more than they compute. The bound is low: BLAS picks kernels for the CPU it
# runs on (AVX2, FMA), which this portable build cannot, so from a few hundred
# multiply-adds on (a ten-class output layer at one row) BLAS is as quick.
TINY_PRODUCT = 512

# Small batches keep BLAS on one thread without a process-wide limit: their
# products go to BLAS in calls that it runs single-threaded by their size.
# OpenBLAS (scipy's) starts threads for a gemv of 2304 * 4 multiply-adds or
# more and for a gemm of more than 65536 * 4; threads that wake for products
# this small cost more than they save, and on a busy machine far more. From
# SPLIT_ROWS rows on (backprop.SMALL_BATCH_ROWS), products are left whole to
# BLAS and its threads.
SPLIT_ROWS = 64
GEMV_LIMIT = 2304 * 4 - 1
GEMM_LIMIT = 65536 * 4


def _layout(layer_units, chunk_rows, sparse=False):
    """Lengths of the work buffer's parts: gathered rows, activations, deltas.

    Sparse rows are gathered only one at a time (for a batch of one row,
    written out dense); larger batches read them where they are.
    """
    units = [int(u) for u in layer_units]
    hidden = sum(units[1:])
    n_params = sum(a * b for a, b in zip(units, units[1:])) + hidden
    gathered = (1 if sparse else chunk_rows) * units[0]
    return gathered, chunk_rows * hidden, chunk_rows * hidden, n_params


def epoch_workspace(layer_units, chunk_rows, dtype, sparse=False):
    """The work buffer :func:`run_epoch` needs, made once per fit.

    Parameters
    ----------
    layer_units : sequence of int
        Units per layer, input first.
    chunk_rows : int
        Rows processed at once; a batch with more rows is computed in chunks
        whose gradients are summed, as :meth:`Network.batch_gradient` does.
    dtype : {np.float32, np.float64}
    sparse : bool, default=False
        For CSR input, which needs room to gather one row only.

    Returns
    -------
    workspace : ndarray of shape (n,)
        Scratch memory: gathered input rows, activations, deltas, gradient.

    Examples
    --------
    Five rows of three inputs (15 values), the activations and the deltas of
    five rows of 4 + 2 units (30 each), a gradient of 3 * 4 + 4 * 2 + 6
    parameters (26):

    >>> import numpy as np
    >>> epoch_workspace([3, 4, 2], 5, np.float64).shape
    (101,)
    """
    return np.empty(sum(_layout(layer_units, chunk_rows, sparse)), dtype)


# -- products, row-major --------------------------------------------------------
# The arrays are C-contiguous (row-major); BLAS reads column-major, in which a
# row-major (r, c) matrix is its transpose. Each product is written for that.

cdef inline void _gemm(
    char* ta, char* tb, int m, int n, int k, floating* a, int lda,
    floating* b, int ldb, floating beta, floating* c, int ldc
) noexcept nogil:
    cdef floating one = 1
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void _gemv(
    char* t, int m, int n, floating* a, int lda, floating* x, floating* y
) noexcept nogil:
    cdef floating one = 1, zero = 0
    cdef int inc = 1
    if floating is float:
        sgemv(t, &m, &n, &one, a, &lda, x, &inc, &zero, y, &inc)
    else:
        dgemv(t, &m, &n, &one, a, &lda, x, &inc, &zero, y, &inc)


cdef inline Py_ssize_t _block(
    Py_ssize_t total, Py_ssize_t per_unit, Py_ssize_t limit
) noexcept nogil:
    """How many of ``total`` units (of ``per_unit`` multiply-adds each) one
    BLAS call takes so that it stays within ``limit`` (0: no limit)."""
    if limit <= 0 or total * per_unit <= limit:
        return total
    return max(1, limit // per_unit)


cdef void _forward_product(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out,
    floating* A, floating* W, floating* out, bint own, Py_ssize_t limit
) noexcept nogil:
    """out (n, fan_out) = A (n, fan_in) @ W (fan_in, fan_out).

    ``own``: by this loop instead of BLAS, for products too small to repay a
    BLAS call (and sure never to start its threads). It adds rows of W,
    so it vectorizes along them. Otherwise BLAS computes it in calls of at
    most ``limit`` multiply-adds each (0: one call), a block of output
    columns per call.
    """
    cdef Py_ssize_t r, i, j, b
    cdef floating a
    cdef floating* o
    cdef floating* w
    if own:
        for r in range(n):
            o = out + r * fan_out
            for j in range(fan_out):
                o[j] = 0
            for i in range(fan_in):
                a = A[r * fan_in + i]
                w = W + i * fan_out
                for j in range(fan_out):
                    o[j] += a * w[j]
    elif n == 1:
        b = _block(fan_out, fan_in, limit)
        j = 0
        while j < fan_out:
            _gemv("N", min(b, fan_out - j), fan_in, W + j, fan_out, A, out + j)
            j += b
    else:
        b = _block(fan_out, n * fan_in, limit)
        j = 0
        while j < fan_out:
            _gemm(
                "N", "N", min(b, fan_out - j), n, fan_in, W + j, fan_out, A,
                fan_in, 0, out + j, fan_out,
            )
            j += b


cdef void _backward_product(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out,
    floating* D, floating* W, floating* out, bint own, Py_ssize_t limit
) noexcept nogil:
    """out (n, fan_in) = D (n, fan_out) @ W.T: the error sent down a layer.

    ``own`` as in _forward_product: dot products of rows of W with D's.
    ``limit`` too, a block of rows of W per BLAS call.
    """
    cdef Py_ssize_t r, i, j, b, m = fan_in - fan_in % 4
    cdef floating t0, t1, t2, t3
    cdef floating* d
    cdef floating* w
    cdef floating* o
    if own:
        for r in range(n):
            d = D + r * fan_out
            o = out + r * fan_in
            # Four rows of W at a time: four independent sums, not one chain
            # of dependent additions.
            for i in range(0, m, 4):
                w = W + i * fan_out
                t0 = t1 = t2 = t3 = 0
                for j in range(fan_out):
                    t0 += d[j] * w[j]
                    t1 += d[j] * w[fan_out + j]
                    t2 += d[j] * w[2 * fan_out + j]
                    t3 += d[j] * w[3 * fan_out + j]
                o[i], o[i + 1], o[i + 2], o[i + 3] = t0, t1, t2, t3
            for i in range(m, fan_in):
                w = W + i * fan_out
                t0 = 0
                for j in range(fan_out):
                    t0 += d[j] * w[j]
                o[i] = t0
    elif n == 1:
        b = _block(fan_in, fan_out, limit)
        i = 0
        while i < fan_in:
            _gemv(
                "T", fan_out, min(b, fan_in - i), W + i * fan_out, fan_out, D,
                out + i,
            )
            i += b
    else:
        b = _block(fan_in, n * fan_out, limit)
        i = 0
        while i < fan_in:
            _gemm(
                "T", "N", min(b, fan_in - i), n, fan_out, W + i * fan_out, fan_out,
                D, fan_out, 0, out + i, fan_in,
            )
            i += b


cdef void _weight_gradient(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out,
    floating* A, floating* D, floating* G, bint accumulate, bint own,
    Py_ssize_t limit
) noexcept nogil:
    """G (fan_in, fan_out) = A.T @ D (+ G when accumulating).

    ``own`` as in _forward_product: each row of G sums rows of D. ``limit``
    too, a block of rows of G per BLAS call.
    """
    cdef Py_ssize_t i, j, r, b
    cdef floating a
    cdef floating* row
    cdef floating* d
    if own and n > 1:
        for i in range(fan_in):
            row = G + i * fan_out
            if not accumulate:
                for j in range(fan_out):
                    row[j] = 0
            for r in range(n):
                a = A[r * fan_in + i]
                d = D + r * fan_out
                for j in range(fan_out):
                    row[j] += a * d[j]
    elif n == 1:
        # An outer product: a loop over contiguous rows of G, quicker than
        # zeroing G for BLAS's ger.
        for i in range(fan_in):
            a = A[i]
            row = G + i * fan_out
            if accumulate:
                for j in range(fan_out):
                    row[j] += a * D[j]
            else:
                for j in range(fan_out):
                    row[j] = a * D[j]
    else:
        b = _block(fan_in, n * fan_out, limit)
        i = 0
        while i < fan_in:
            _gemm(
                "N", "T", fan_out, min(b, fan_in - i), n, D, fan_out, A + i, fan_in,
                1 if accumulate else 0, G + i * fan_out, fan_out,
            )
            i += b


cdef void _sparse_forward_product(
    Py_ssize_t n, Py_ssize_t fan_out, const Sparse* X, const Py_ssize_t* rows,
    const floating* x_data, floating* W, floating* out
) noexcept nogil:
    """out (n, fan_out) = X[rows] @ W for CSR rows: each row of out adds the
    rows of W its nonzeros pick, in the order of X's entries."""
    cdef Py_ssize_t r, p, j
    cdef floating a
    cdef floating* o
    cdef floating* w
    for r in range(n):
        o = out + r * fan_out
        for j in range(fan_out):
            o[j] = 0
        for p in range(X.indptr[rows[r]], X.indptr[rows[r] + 1]):
            a = x_data[p]
            w = W + X.indices[p] * fan_out
            for j in range(fan_out):
                o[j] += a * w[j]


cdef void _sparse_weight_gradient(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out, const Sparse* X,
    const Py_ssize_t* rows, const floating* x_data, floating* D, floating* G,
    bint accumulate
) noexcept nogil:
    """G (fan_in, fan_out) = X[rows].T @ D (+ G): each nonzero x_rj adds
    x_rj * D[r] to row j of G, rows r in order."""
    cdef Py_ssize_t r, p, j
    cdef floating a
    cdef floating* g
    cdef floating* d
    if not accumulate:
        for j in range(fan_in * fan_out):
            G[j] = 0
    for r in range(n):
        d = D + r * fan_out
        for p in range(X.indptr[rows[r]], X.indptr[rows[r] + 1]):
            a = x_data[p]
            g = G + X.indices[p] * fan_out
            for j in range(fan_out):
                g[j] += a * d[j]


cdef void _column_sums(
    Py_ssize_t n, Py_ssize_t k, floating* D, floating* out, bint accumulate
) noexcept nogil:
    """out (k,) = D.sum(axis=0) (+ out): a bias gradient."""
    cdef Py_ssize_t i, j
    cdef floating* row
    if not accumulate:
        for j in range(k):
            out[j] = D[j]
        D += k
        n -= 1
    for i in range(n):
        row = D + i * k
        for j in range(k):
            out[j] += row[j]


# -- element-wise passes ---------------------------------------------------------

cdef void _bias_activation(
    int activation, Py_ssize_t n, Py_ssize_t k, floating* A, floating* b
) noexcept nogil:
    """A = f(A + b) row by row; the switch stays outside the loops."""
    cdef Py_ssize_t i, j
    cdef floating* row
    for i in range(n):
        row = A + i * k
        if activation == K.IDENTITY:
            for j in range(k):
                row[j] = row[j] + b[j]
        elif activation == K.LOGISTIC:
            for j in range(k):
                row[j] = K.logistic(row[j] + b[j])
        elif activation == K.TANH:
            for j in range(k):
                row[j] = K.f_tanh(row[j] + b[j])
        else:
            for j in range(k):
                row[j] = K.relu(row[j] + b[j])


cdef void _derivative(
    int activation, Py_ssize_t size, floating* A, floating* D
) noexcept nogil:
    """D *= f'(Z), written through A = f(Z)."""
    cdef Py_ssize_t i
    if activation == K.LOGISTIC:
        for i in range(size):
            D[i] = K.logistic_derivative(A[i], D[i])
    elif activation == K.TANH:
        for i in range(size):
            D[i] = K.tanh_derivative(A[i], D[i])
    elif activation == K.RELU:
        for i in range(size):
            D[i] = K.relu_derivative(A[i], D[i])


cdef floating _output_row(
    int loss, const floating* z, const floating* y, floating* out,
    floating c, Py_ssize_t k
) noexcept nogil:
    if loss == K.SQUARED_ERROR:
        return K.squared_error_row(z, y, out, c, k)
    if loss == K.POISSON:
        return K.poisson_row(z, y, out, c, k)
    if loss == K.BINARY_LOG_LOSS:
        return K.binary_log_loss_row(z, y, out, c, k)
    return K.log_loss_row(z, y, out, c, k)


# -- the epoch -----------------------------------------------------------------

cdef struct Config:
    int n_layers          # weight matrices
    int activation
    int loss
    int reduction
    int solver
    int nesterov
    int averaging
    Py_ssize_t chunk_rows
    Py_ssize_t n_coefs
    Py_ssize_t n_params
    Py_ssize_t n_features
    Py_ssize_t n_outputs
    double alpha
    double total_weight
    double learning_rate  # SGD's rate, Adam's initial rate
    double momentum
    double beta_1
    double beta_2
    double epsilon
    long average_start
    long check_steps
    long check_rows
    Py_ssize_t tiny_product
    Py_ssize_t split_rows
    Py_ssize_t gemv_limit
    Py_ssize_t gemm_limit


cdef struct Sparse:
    # CSR structure of the input; its values stay typed (x_data), as the
    # struct cannot be.
    const Py_ssize_t* indices
    const Py_ssize_t* indptr


cdef struct Counters:
    int status
    long batch
    double loss_sum
    double weight_sum
    long seen
    long steps
    long adam_t
    long n_averaged
    long samples_seen


cdef double _squared_norm(const floating* w, Py_ssize_t size) noexcept nogil:
    """sum w^2 in double, with eight independent sums: the compiler packs
    them into vectors, and four chains of vector additions hide the latency
    of each addition.

    Not BLAS's dot: OpenBLAS runs a dot product of a network's size on
    several threads, which a step this short cannot afford.
    """
    cdef Py_ssize_t i, m = size - size % 8
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
    for i in range(0, m, 8):
        a0 += <double>w[i] * w[i]
        a1 += <double>w[i + 1] * w[i + 1]
        a2 += <double>w[i + 2] * w[i + 2]
        a3 += <double>w[i + 3] * w[i + 3]
        a4 += <double>w[i + 4] * w[i + 4]
        a5 += <double>w[i + 5] * w[i + 5]
        a6 += <double>w[i + 6] * w[i + 6]
        a7 += <double>w[i + 7] * w[i + 7]
    for i in range(m, size):
        a0 += <double>w[i] * w[i]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


cdef double _chunk(
    Config* cfg, const Py_ssize_t* units, const Py_ssize_t* coef_offsets,
    const Py_ssize_t* unit_offsets, floating* params,
    const floating* X, const Sparse* sparse, const floating* Y,
    const floating* sw, const Py_ssize_t* rows, Py_ssize_t n, floating* c_rows,
    floating c_const, floating* Xb, floating* acts, floating* deltas,
    floating* grad, bint first
) noexcept nogil:
    """Forward and backward pass of ``n`` rows; returns sum_i s_i loss_i.

    Fills ``grad`` with sum_i c_i grad(loss_i) (adds to it unless ``first``);
    the weight decay is added later, in the update. With ``sparse``, ``X``
    holds the values of a CSR matrix of that structure.
    """
    cdef Py_ssize_t L = cfg.n_layers, l, i, fan_in, fan_out
    cdef Py_ssize_t k = cfg.n_outputs, d = cfg.n_features
    cdef floating* A
    cdef floating* inputs
    cdef floating* Z
    cdef floating* delta
    cdef floating* below
    cdef floating* biases = params + cfg.n_coefs
    cdef floating* gbiases = grad + cfg.n_coefs
    cdef floating ci
    cdef double loss_sum = 0
    cdef floating row_loss
    cdef Py_ssize_t p
    cdef bint by_entries = sparse != NULL and n > 1
    # A small batch's products go to BLAS in calls small enough to run on one
    # thread (see SPLIT_ROWS).
    cdef Py_ssize_t limit = 0
    if n < cfg.split_rows:
        limit = cfg.gemv_limit if n == 1 else cfg.gemm_limit

    # Gather the rows: one dense row is read where it is; one sparse row is
    # written out dense, as the update reads its every entry (_update); more
    # sparse rows are read where they are, entry by entry (by_entries).
    if sparse != NULL:
        inputs = Xb
        if n == 1:
            memset(Xb, 0, d * sizeof(floating))
            for p in range(sparse.indptr[rows[0]], sparse.indptr[rows[0] + 1]):
                Xb[sparse.indices[p]] += X[p]
    elif n == 1:
        inputs = <floating*>X + rows[0] * d
    else:
        for i in range(n):
            memcpy(Xb + i * d, X + rows[i] * d, d * sizeof(floating))
        inputs = Xb

    # Forward: each hidden buffer holds f(Z), the last one the logits Z.
    A = inputs
    for l in range(L):
        fan_in, fan_out = units[l], units[l + 1]
        if l == 0 and by_entries:
            _sparse_forward_product(n, fan_out, sparse, rows, X, params, acts)
        else:
            _forward_product(
                n, fan_in, fan_out, A, params + coef_offsets[l],
                acts + n * unit_offsets[l], n * fan_in * fan_out <= cfg.tiny_product,
                limit,
            )
        A = acts + n * unit_offsets[l]
        _bias_activation(
            cfg.activation if l < L - 1 else K.IDENTITY,
            n, fan_out, A, biases + unit_offsets[l],
        )

    # Output error (f(Z) - Y) scaled by c_i, and the losses, row by row.
    Z = A
    delta = deltas + n * unit_offsets[L - 1]
    for i in range(n):
        ci = c_rows[i] if c_rows != NULL else c_const
        row_loss = _output_row(
            cfg.loss, Z + i * k, Y + rows[i] * k, delta + i * k, ci, k
        )
        if sw != NULL:
            loss_sum += <double>sw[rows[i]] * row_loss
        else:
            loss_sum += row_loss

    # Backward.
    for l in range(L - 1, -1, -1):
        fan_in, fan_out = units[l], units[l + 1]
        delta = deltas + n * unit_offsets[l]
        A = inputs if l == 0 else acts + n * unit_offsets[l - 1]
        if l == 0 and by_entries:
            _sparse_weight_gradient(
                n, fan_in, fan_out, sparse, rows, X, delta, grad, not first
            )
        elif n > 1:
            # One row's weight gradient, the outer product A.T delta, is left
            # to the update, which forms it as it reads it (_update).
            _weight_gradient(
                n, fan_in, fan_out, A, delta, grad + coef_offsets[l], not first,
                n * fan_in * fan_out <= cfg.tiny_product, limit,
            )
        _column_sums(n, fan_out, delta, gbiases + unit_offsets[l], not first)
        if l > 0:
            below = deltas + n * unit_offsets[l - 1]
            _backward_product(
                n, fan_in, fan_out, delta, params + coef_offsets[l], below,
                n * fan_in * fan_out <= cfg.tiny_product, limit,
            )
            _derivative(cfg.activation, n * fan_in, A, below)
    return loss_sum


cdef inline double _square(floating x) noexcept nogil:
    return <double>x * x


cdef double _sgd(
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
            s0 += _square(K.sgd_nesterov(p + j, v + j, a * g[j] + decay * p[j], mu))
            s1 += _square(K.sgd_nesterov(
                p + j + 1, v + j + 1, a * g[j + 1] + decay * p[j + 1], mu))
            s2 += _square(K.sgd_nesterov(
                p + j + 2, v + j + 2, a * g[j + 2] + decay * p[j + 2], mu))
            s3 += _square(K.sgd_nesterov(
                p + j + 3, v + j + 3, a * g[j + 3] + decay * p[j + 3], mu))
        for j in range(m, size):
            s0 += _square(K.sgd_nesterov(p + j, v + j, a * g[j] + decay * p[j], mu))
    elif penalized:
        for j in range(0, m, 4):
            s0 += _square(
                K.sgd_heavy_ball(p + j, v + j, a * g[j] + decay * p[j], mu))
            s1 += _square(K.sgd_heavy_ball(
                p + j + 1, v + j + 1, a * g[j + 1] + decay * p[j + 1], mu))
            s2 += _square(K.sgd_heavy_ball(
                p + j + 2, v + j + 2, a * g[j + 2] + decay * p[j + 2], mu))
            s3 += _square(K.sgd_heavy_ball(
                p + j + 3, v + j + 3, a * g[j + 3] + decay * p[j + 3], mu))
        for j in range(m, size):
            s0 += _square(
                K.sgd_heavy_ball(p + j, v + j, a * g[j] + decay * p[j], mu))
    elif nesterov:
        for j in range(size):
            K.sgd_nesterov(p + j, v + j, a * g[j], mu)
    else:
        for j in range(size):
            K.sgd_heavy_ball(p + j, v + j, a * g[j], mu)
    return (s0 + s1) + (s2 + s3)


cdef double _adam(
    floating* p, floating* m, floating* u, const floating* h, floating a,
    Py_ssize_t size, floating decay, floating b1, floating b2, floating neg_lr,
    floating eps, bint penalized
) noexcept nogil:
    """Adam on ``size`` parameters of scaled gradient ``a * h``, plus
    ``decay * p`` for ``penalized`` ones, whose sum of squares after the step
    it returns (else 0); ``a`` and the loops as in _sgd."""
    cdef Py_ssize_t j, m4 = size - size % 4
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    if penalized:
        for j in range(0, m4, 4):
            s0 += _square(K.adam_update(
                p + j, m + j, u + j, a * h[j] + decay * p[j], b1, b2, neg_lr, eps))
            s1 += _square(K.adam_update(
                p + j + 1, m + j + 1, u + j + 1, a * h[j + 1] + decay * p[j + 1],
                b1, b2, neg_lr, eps))
            s2 += _square(K.adam_update(
                p + j + 2, m + j + 2, u + j + 2, a * h[j + 2] + decay * p[j + 2],
                b1, b2, neg_lr, eps))
            s3 += _square(K.adam_update(
                p + j + 3, m + j + 3, u + j + 3, a * h[j + 3] + decay * p[j + 3],
                b1, b2, neg_lr, eps))
        for j in range(m4, size):
            s0 += _square(K.adam_update(
                p + j, m + j, u + j, a * h[j] + decay * p[j], b1, b2, neg_lr, eps))
    else:
        for j in range(size):
            K.adam_update(p + j, m + j, u + j, a * h[j], b1, b2, neg_lr, eps)
    return (s0 + s1) + (s2 + s3)


cdef void _average(
    floating* mean, const floating* p, Py_ssize_t size, floating count
) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(size):
        K.average_update(mean + j, p[j], count)


cdef double _update(
    Config* cfg, const Py_ssize_t* units, const Py_ssize_t* coef_offsets,
    const Py_ssize_t* unit_offsets, floating* params, floating* grad,
    double decay, floating* state1, floating* state2, long t,
    floating* x_row, floating* acts, floating* deltas
) noexcept nogil:
    """One optimizer step; returns ||W||^2 after it when ``cfg.alpha`` is not
    0 (the next step's penalty), else 0.

    ``grad`` holds the scaled data gradient; the weights' share of the
    penalty, ``decay * W``, joins it here (biases are not decayed). With
    ``x_row`` (a batch of one row) the weight gradients are not in ``grad``:
    row i of layer l's is ``a_i * delta`` (the layer's input times its
    delta), formed here as the update reads it, which saves writing and
    reading back a gradient as large as the network. The squares of the new
    weights are summed as they are written, rather than in a pass of their
    own.
    """
    cdef Py_ssize_t nc = cfg.n_coefs, nb = cfg.n_params - cfg.n_coefs
    cdef Py_ssize_t l, i, fan_in, fan_out, off
    cdef bint penalized = cfg.alpha != 0
    cdef double norm = 0
    cdef double lr_t, root_k
    cdef floating neg_lr = 0, eps = 0, dec = <floating>decay
    cdef floating mu = <floating>cfg.momentum
    cdef floating b1 = <floating>cfg.beta_1, b2 = <floating>cfg.beta_2
    cdef floating* A
    cdef floating* delta
    if cfg.solver == K.ADAM:
        # The bias correction folded into the rate, with u = v / k
        # (_optimizers.Adam.step), in double as Python computes it.
        lr_t = cfg.learning_rate * sqrt(1 - pow(cfg.beta_2, t)) / (
            1 - pow(cfg.beta_1, t)
        )
        root_k = sqrt((1 - cfg.beta_2) / (1 - cfg.beta_1) ** 2)
        neg_lr = <floating>(-(lr_t / root_k))
        eps = <floating>(cfg.epsilon / root_k)

    if x_row == NULL:
        if cfg.solver == K.SGD:
            norm = _sgd(params, state1, grad, 1, nc, dec, mu, cfg.nesterov,
                        penalized)
        else:
            norm = _adam(params, state1, state2, grad, 1, nc, dec, b1, b2, neg_lr,
                         eps, penalized)
    else:
        for l in range(cfg.n_layers):
            fan_in, fan_out = units[l], units[l + 1]
            A = x_row if l == 0 else acts + unit_offsets[l - 1]
            delta = deltas + unit_offsets[l]
            for i in range(fan_in):
                off = coef_offsets[l] + i * fan_out
                if cfg.solver == K.SGD:
                    norm += _sgd(params + off, state1 + off, delta, A[i], fan_out,
                                 dec, mu, cfg.nesterov, penalized)
                else:
                    norm += _adam(params + off, state1 + off, state2 + off, delta,
                                  A[i], fan_out, dec, b1, b2, neg_lr, eps, penalized)
    # The biases.
    if cfg.solver == K.SGD:
        _sgd(params + nc, state1 + nc, grad + nc, 1, nb, 0, mu, cfg.nesterov, False)
    else:
        _adam(params + nc, state1 + nc, state2 + nc, grad + nc, 1, nb, 0, b1, b2,
              neg_lr, eps, False)
    return norm


cdef int _epoch(
    Config* cfg, const Py_ssize_t* units, const Py_ssize_t* coef_offsets,
    const Py_ssize_t* unit_offsets, floating* params,
    const floating* X, const Sparse* sparse, const floating* Y,
    const floating* sw, const Py_ssize_t* order, const Py_ssize_t* bounds,
    Py_ssize_t n_batches, floating* state1, floating* state2, floating* mean,
    floating* work, floating* c_rows, Counters* out
) except -1 nogil:
    cdef Py_ssize_t hidden = unit_offsets[cfg.n_layers]
    cdef floating* Xb = work
    cdef floating* acts = Xb + (
        1 if sparse != NULL else cfg.chunk_rows) * cfg.n_features
    cdef floating* deltas = acts + cfg.chunk_rows * hidden
    cdef floating* grad = deltas + cfg.chunk_rows * hidden
    cdef Py_ssize_t b, i, n, start, stop, n_chunks, chunk, lo, hi
    cdef double weight, scale, c_total, c_const, decay, loss_sum, loss, norm
    cdef long since_steps = 0, since_rows = 0
    cdef floating* c_ptr
    cdef bint averaging = mean != NULL

    scale = cfg.learning_rate if cfg.solver == K.SGD else 1 - cfg.beta_1
    norm = _squared_norm(params, cfg.n_coefs) if cfg.alpha != 0 else 0
    for b in range(n_batches):
        start, stop = bounds[2 * b], bounds[2 * b + 1]
        n = stop - start
        # The batch's weight and reduction coefficients
        # (reduction.reduction_coefficients), with the optimizer's gradient
        # scale folded in.
        c_ptr = NULL
        c_const = 0
        if sw == NULL:
            weight = n
            if cfg.reduction == K.MEAN:
                c_const, c_total = (1.0 / n) * scale, scale
            else:
                c_const, c_total = scale, n * scale
        else:
            weight = 0
            for i in range(n):
                weight += sw[order[start + i]]
            if weight == 0:
                # No weight, no gradient to follow; the rows still count.
                out.seen += n
                continue
            c_ptr = c_rows
            if cfg.reduction == K.MEAN:
                for i in range(n):
                    c_rows[i] = <floating>((sw[order[start + i]] / weight) * scale)
                c_total = scale
            else:
                for i in range(n):
                    c_rows[i] = <floating>(sw[order[start + i]] * scale)
                c_total = weight * scale
        decay = cfg.alpha * c_total / cfg.total_weight

        # Chunks of at most chunk_rows rows, of lengths differing by at most
        # one (backprop._chunks); their gradients add up.
        n_chunks = (n + cfg.chunk_rows - 1) // cfg.chunk_rows
        loss_sum = 0
        for chunk in range(n_chunks):
            lo = chunk * n // n_chunks
            hi = (chunk + 1) * n // n_chunks
            loss_sum += _chunk(
                cfg, units, coef_offsets, unit_offsets, params, X, sparse, Y, sw,
                order + start + lo, hi - lo,
                c_ptr + lo if c_ptr != NULL else NULL, <floating>c_const,
                Xb, acts, deltas, grad, chunk == 0,
            )

        loss = loss_sum / weight
        if cfg.alpha != 0:
            loss += 0.5 * cfg.alpha * norm / cfg.total_weight
        if not isfinite(loss):
            out.status = STATUS_NONFINITE_LOSS
            out.batch = b + 1
            return 0

        out.steps += 1
        out.adam_t += 1
        if averaging:
            out.samples_seen += n
        # ||W||^2 at the weights the next step starts from.
        norm = _update(
            cfg, units, coef_offsets, unit_offsets, params, grad, decay,
            state1, state2, out.adam_t,
            NULL if n > 1 else (
                Xb if sparse != NULL else <floating*>X + order[start] * cfg.n_features
            ),
            acts, deltas,
        )
        if averaging and out.samples_seen >= cfg.average_start:
            out.n_averaged += 1
            _average(mean, params, cfg.n_params, <floating>out.n_averaged)
        out.loss_sum += weight * loss
        out.weight_sum += weight
        out.seen += n

        since_steps += 1
        since_rows += n
        if since_steps >= cfg.check_steps or since_rows >= cfg.check_rows:
            since_steps = since_rows = 0
            with gil:
                PyErr_CheckSignals()

    # A step's result is checked by the next step's loss; the last step's here.
    for i in range(cfg.n_params):
        if not isfinite(params[i]):
            out.status = STATUS_NONFINITE_WEIGHTS
            out.batch = n_batches
            break
    return 0


def squared_norm(const floating[::1] w not None):
    """``sum(w ** 2)`` in double, on one thread (see _squared_norm).

    Examples
    --------
    >>> import numpy as np
    >>> squared_norm(np.array([3.0, 4.0]))
    25.0
    """
    cdef double total
    with nogil:
        total = _squared_norm(&w[0], w.shape[0]) if w.shape[0] else 0.0
    return total


def one_thread_product(
    const floating[:, ::1] A not None,
    const floating[:, :] W not None,
    floating[:, ::1] out not None,
):
    """``out = A @ W``, in BLAS calls each small enough to run on one thread.

    The numpy path's products for batches of fewer than ``SPLIT_ROWS`` rows:
    numpy has no per-call thread count, and OpenBLAS wakes all its threads
    for a product as small as one row by a 128 x 128 matrix.

    Parameters
    ----------
    A : ndarray of shape (n, k), C-contiguous
    W : ndarray of shape (k, m)
        C-contiguous (a weight matrix), or F-contiguous (the transpose of
        one, as in the backward pass).
    out : ndarray of shape (n, m), C-contiguous

    Returns
    -------
    out : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> A, W = np.ones((2, 3)), np.arange(12.0).reshape(4, 3)
    >>> one_thread_product(A, W.T, np.empty((2, 4)))
    array([[ 3., 12., 21., 30.],
           [ 3., 12., 21., 30.]])
    """
    cdef Py_ssize_t n = A.shape[0], k = A.shape[1], m = W.shape[1]
    cdef Py_ssize_t size = sizeof(floating)
    cdef Py_ssize_t limit = GEMV_LIMIT if n == 1 else GEMM_LIMIT
    cdef bint own = n * k * m <= TINY_PRODUCT
    cdef bint c_order = W.strides[1] == size and W.strides[0] == m * size
    if W.shape[0] != k or out.shape[0] != n or out.shape[1] != m:
        raise ValueError(
            f"Shapes do not match: A ({n}, {k}), W ({W.shape[0]}, {m}), "
            f"out ({out.shape[0]}, {out.shape[1]})."
        )
    if not c_order and not (W.strides[0] == size and W.strides[1] == k * size):
        raise ValueError("W must be C- or F-contiguous.")
    if n == 0 or m == 0:
        return np.asarray(out)
    if k == 0:
        out[:, :] = 0
        return np.asarray(out)
    with nogil:
        if c_order:
            _forward_product(
                n, k, m, <floating*>&A[0, 0], <floating*>&W[0, 0], &out[0, 0], own,
                limit,
            )
        else:
            # W is the transpose of a C-contiguous (m, k) matrix.
            _backward_product(
                n, m, k, <floating*>&A[0, 0], <floating*>&W[0, 0], &out[0, 0], own,
                limit,
            )
    return np.asarray(out)


def run_epoch(
    floating[::1] params not None,
    layer_units,
    X,
    const floating[:, ::1] Y not None,
    const floating[::1] sample_weight,
    const Py_ssize_t[::1] order not None,
    const Py_ssize_t[:, ::1] bounds not None,
    floating[::1] workspace not None,
    *,
    int activation,
    int loss,
    int reduction,
    double alpha,
    double total_weight,
    int solver,
    double learning_rate,
    floating[::1] velocity=None,
    double momentum=0.0,
    bint nesterov=False,
    floating[::1] adam_m=None,
    floating[::1] adam_u=None,
    long adam_t=0,
    double beta_1=0.9,
    double beta_2=0.999,
    double epsilon=1e-8,
    floating[::1] average_mean=None,
    long n_averaged=0,
    long samples_seen=0,
    long average_start=1,
    Py_ssize_t chunk_rows,
    long check_steps=_CHECK_STEPS,
    Py_ssize_t tiny_product=TINY_PRODUCT,
    Py_ssize_t split_rows=SPLIT_ROWS,
    Py_ssize_t gemv_limit=GEMV_LIMIT,
    Py_ssize_t gemm_limit=GEMM_LIMIT,
):
    """Run one epoch of minibatch steps, without the GIL.

    Parameters
    ----------
    params : ndarray of shape (n_parameters,)
        All weights (each ``(fan_in, fan_out)``, row-major), then all biases,
        as :attr:`Network.parameters`; updated in place.
    layer_units : sequence of int
        Units per layer, input first.
    X : ndarray of shape (n_samples, n_features), C-contiguous, or CSR matrix
        Of the dtype of ``params``; a CSR matrix goes with
        ``epoch_workspace(..., sparse=True)``.
    Y : ndarray of shape (n_samples, n_outputs), C-contiguous
    sample_weight : ndarray of shape (n_samples,) or None
    order : ndarray of intp, shape (n_samples,) or shorter
        Row indices in the epoch's order (the Minibatcher's permutation).
    bounds : ndarray of intp, shape (n_batches, 2)
        ``(start, stop)`` of each batch in ``order``, the last-batch policy
        already applied (``Minibatcher.bounds``).
    workspace : ndarray
        From :func:`epoch_workspace` with the same ``layer_units`` and
        ``chunk_rows``.
    activation, loss, reduction, solver : int
        Codes from ``ACTIVATION_CODES``, ``LOSS_CODES``, ``REDUCTION_CODES``,
        ``SOLVER_CODES``.
    alpha : float
        L2 penalty strength.
    total_weight : float
        ``S``, the training set's total sample weight.
    learning_rate : float
        SGD's current rate; Adam's ``learning_rate_init``.
    velocity : ndarray, optional
        SGD's state as ``_optimizers.SGD`` keeps it (``momentum * v`` with
        Nesterov momentum); updated in place.
    momentum : float
    nesterov : bool
    adam_m, adam_u : ndarray, optional
        Adam's first moment and second moment divided by
        ``k = (1 - beta_2) / (1 - beta_1)**2``, as ``_optimizers.Adam`` keeps
        them; updated in place.
    adam_t : int
        Adam's steps so far.
    beta_1, beta_2, epsilon : float
    average_mean : ndarray, optional
        The running mean of ``_averaging.WeightAverage``; updated in place.
        None trains without averaging.
    n_averaged, samples_seen, average_start : int
        ``WeightAverage``'s counters and start.
    chunk_rows : int
        Rows per chunk, as given to :func:`epoch_workspace`.
    check_steps : int
        Steps between two looks for a pending Ctrl-C.
    tiny_product : int
        Products of at most this many multiply-adds (rows x fan_in x
        fan_out) are computed by the loop's own code instead of BLAS; 0
        sends every product to BLAS.
    split_rows, gemv_limit, gemm_limit : int
        Products of fewer than ``split_rows`` rows go to BLAS in calls of at
        most ``gemv_limit`` (one row) or ``gemm_limit`` multiply-adds, which
        BLAS runs on one thread; 0 makes one call per product.

    Returns
    -------
    result : EpochResult
        Status, loss sums, counters; the epoch loss is
        ``loss_sum / weight_sum``.

    Examples
    --------
    Two steps of plain SGD on batches of four rows:

    >>> import numpy as np
    >>> from skbatchnet.backprop import Network
    >>> X = np.random.RandomState(0).randn(8, 3)
    >>> Y = X[:, :1] - X[:, 1:2]
    >>> net = Network.initialize([3, 4, 1], activation="tanh", random_state=0)
    >>> work = epoch_workspace(net.layer_units, 4, X.dtype)
    >>> result = run_epoch(
    ...     net.parameters, net.layer_units, X, Y, None,
    ...     np.arange(8, dtype=np.intp), np.array([[0, 4], [4, 8]], dtype=np.intp),
    ...     work, activation=ACTIVATION_CODES["tanh"],
    ...     loss=LOSS_CODES["squared_error"], reduction=REDUCTION_CODES["mean"],
    ...     alpha=0.0, total_weight=8.0, solver=SOLVER_CODES["sgd"],
    ...     learning_rate=0.1, velocity=np.zeros_like(net.parameters), chunk_rows=4,
    ... )
    >>> result.status == OK, result.steps, result.seen
    (True, 2, 8)
    """
    cdef Config cfg
    cdef Counters out
    cdef Sparse csr
    cdef Sparse* sparse = NULL
    cdef const floating[:, ::1] X_dense
    cdef const floating[::1] x_values
    cdef const Py_ssize_t[::1] x_indices, x_indptr
    cdef const floating* x_ptr = NULL
    cdef Py_ssize_t L, l, n_samples = X.shape[0], n_batches = bounds.shape[0]
    cdef Py_ssize_t[::1] units_v, coef_off, unit_off
    cdef floating[::1] c_rows
    cdef floating* sw_ptr = NULL
    cdef floating* s1 = NULL
    cdef floating* s2 = NULL
    cdef floating* mean_ptr = NULL
    cdef Py_ssize_t need, max_rows = 0

    units = [int(u) for u in layer_units]
    L = len(units) - 1
    if L < 1:
        raise ValueError(f"layer_units needs at least two layers, got {units!r}.")
    units_v = np.asarray(units, dtype=np.intp)
    coef_off = np.zeros(L + 1, dtype=np.intp)
    unit_off = np.zeros(L + 1, dtype=np.intp)
    for l in range(L):
        coef_off[l + 1] = coef_off[l] + units[l] * units[l + 1]
        unit_off[l + 1] = unit_off[l] + units[l + 1]

    cfg.n_layers = L
    cfg.n_coefs = coef_off[L]
    cfg.n_params = coef_off[L] + unit_off[L]
    cfg.n_features = units[0]
    cfg.n_outputs = units[L]
    if params.shape[0] != cfg.n_params:
        raise ValueError(
            f"params has {params.shape[0]} values but layer_units {units} need "
            f"{cfg.n_params}."
        )
    if scipy.sparse.issparse(X):
        if X.format != "csr":
            raise ValueError(f"A sparse X must be CSR, got {X.format.upper()}.")
        # The loop indexes with intp; scipy keeps int32 indices where they fit.
        x_values = X.data
        x_indices = np.asarray(X.indices, dtype=np.intp)
        x_indptr = np.asarray(X.indptr, dtype=np.intp)
        if x_values.shape[0] != x_indices.shape[0] or x_indptr.shape[0] != n_samples + 1:
            raise ValueError("X's data, indices and indptr do not make a CSR matrix.")
        if x_values.shape[0]:
            x_ptr = &x_values[0]
        csr.indices = &x_indices[0] if x_indices.shape[0] else NULL
        csr.indptr = &x_indptr[0]
        sparse = &csr
    else:
        X_dense = X
        if n_samples and X.shape[1]:
            x_ptr = &X_dense[0, 0]
    if X.shape[1] != units[0] or Y.shape[1] != units[L] or Y.shape[0] != n_samples:
        raise ValueError(
            f"X {(X.shape[0], X.shape[1])} and Y {(Y.shape[0], Y.shape[1])} do not match "
            f"layer_units {units}: X needs {units[0]} columns, Y {units[L]} and "
            "as many rows as X."
        )
    if sample_weight is not None:
        if sample_weight.shape[0] != n_samples:
            raise ValueError(
                f"sample_weight has {sample_weight.shape[0]} values for "
                f"{n_samples} rows."
            )
        sw_ptr = <floating*>&sample_weight[0]
    if bounds.shape[1] != 2:
        raise ValueError(f"bounds must have shape (n_batches, 2), got {bounds.shape}.")
    for l in range(n_batches):
        if not 0 <= bounds[l, 0] < bounds[l, 1] <= order.shape[0]:
            raise ValueError(
                f"bounds[{l}] = {tuple(bounds[l])} is not a non-empty range of "
                f"order (length {order.shape[0]})."
            )
        max_rows = max(max_rows, bounds[l, 1] - bounds[l, 0])
    for l in range(order.shape[0]):
        if not 0 <= order[l] < n_samples:
            raise ValueError(f"order[{l}] = {order[l]} is not a row of X.")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}.")
    need = sum(_layout(units, chunk_rows, sparse != NULL))
    if workspace.shape[0] < need:
        raise ValueError(
            f"workspace has {workspace.shape[0]} values; layer_units {units} with "
            f"chunk_rows={chunk_rows} need {need}: make it with epoch_workspace."
        )
    if activation not in ACTIVATION_CODES.values():
        raise ValueError(f"activation must be a code of ACTIVATION_CODES, got {activation}.")
    if loss not in LOSS_CODES.values():
        raise ValueError(f"loss must be a code of LOSS_CODES, got {loss}.")
    if reduction not in REDUCTION_CODES.values():
        raise ValueError(f"reduction must be a code of REDUCTION_CODES, got {reduction}.")
    if not total_weight > 0:
        raise ValueError(f"total_weight must be positive, got {total_weight}.")
    if solver == K.SGD:
        if velocity is None or velocity.shape[0] != cfg.n_params:
            raise ValueError("solver=SGD needs velocity, a vector shaped like params.")
        s1 = &velocity[0]
    elif solver == K.ADAM:
        if (
            adam_m is None or adam_u is None
            or adam_m.shape[0] != cfg.n_params or adam_u.shape[0] != cfg.n_params
        ):
            raise ValueError("solver=ADAM needs adam_m and adam_u shaped like params.")
        s1, s2 = &adam_m[0], &adam_u[0]
    else:
        raise ValueError(f"solver must be a code of SOLVER_CODES, got {solver}.")
    if average_mean is not None:
        if average_mean.shape[0] != cfg.n_params:
            raise ValueError("average_mean must be shaped like params.")
        mean_ptr = &average_mean[0]

    cfg.activation = activation
    cfg.loss = loss
    cfg.reduction = reduction
    cfg.solver = solver
    cfg.nesterov = nesterov
    cfg.chunk_rows = chunk_rows
    cfg.alpha = alpha
    cfg.total_weight = total_weight
    cfg.learning_rate = learning_rate
    cfg.momentum = momentum
    cfg.beta_1 = beta_1
    cfg.beta_2 = beta_2
    cfg.epsilon = epsilon
    cfg.average_start = average_start
    cfg.check_steps = max(1, check_steps)
    cfg.check_rows = _CHECK_ROWS
    cfg.tiny_product = tiny_product
    cfg.split_rows = split_rows
    cfg.gemv_limit = gemv_limit
    cfg.gemm_limit = gemm_limit

    out.status = STATUS_OK
    out.batch = 0
    out.loss_sum = 0
    out.weight_sum = 0
    out.seen = 0
    out.steps = 0
    out.adam_t = adam_t
    out.n_averaged = n_averaged
    out.samples_seen = samples_seen

    # Per-row coefficients of a weighted batch: one per row of the largest.
    c_rows = np.empty(max(max_rows, 1), dtype=np.float32 if floating is float else np.float64)
    if n_batches:
        try:
            with nogil:
                _epoch(
                    &cfg, &units_v[0], &coef_off[0], &unit_off[0], &params[0],
                    x_ptr, sparse, &Y[0, 0], sw_ptr, &order[0], &bounds[0, 0],
                    n_batches, s1, s2, mean_ptr, &workspace[0], &c_rows[0], &out,
                )
        except KeyboardInterrupt:
            out.status = STATUS_INTERRUPTED
    return EpochResult(
        out.status,
        out.batch,
        out.loss_sum,
        out.weight_sum,
        out.seen,
        out.steps,
        out.n_averaged,
        out.samples_seen,
    )
