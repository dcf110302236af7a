# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""Matrix products of the compiled tier: BLAS through scipy, and the loop's own.

Inline, so that each module cimporting them (the epoch, and its AVX2 twin)
compiles them with its own instruction set. The arrays are C-contiguous
(row-major); BLAS reads column-major, in which a row-major (r, c) matrix is
its transpose. Each product is written for that.

``own`` (a product too small to repay a BLAS call, and sure never to start
its threads) is computed by the loop's code; otherwise BLAS computes it in
calls of at most ``limit`` multiply-adds each (0: one call), which OpenBLAS
runs on one thread when small enough (see skbatchnet/_codes.py).
"""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


cdef struct Sparse:
    # CSR structure of the input; its values stay typed (x_data), as the
    # struct cannot be.
    const Py_ssize_t* indices
    const Py_ssize_t* indptr



cdef inline void gemm(
    char* ta, char* tb, int m, int n, int k, floating* a, int lda,
    floating* b, int ldb, floating beta, floating* c, int ldc
) noexcept nogil:
    cdef floating one = 1
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)


cdef inline void gemv(
    char* t, int m, int n, floating* a, int lda, floating* x, floating* y
) noexcept nogil:
    cdef floating one = 1, zero = 0
    cdef int inc = 1
    if floating is float:
        sgemv(t, &m, &n, &one, a, &lda, x, &inc, &zero, y, &inc)
    else:
        dgemv(t, &m, &n, &one, a, &lda, x, &inc, &zero, y, &inc)


cdef inline Py_ssize_t block(
    Py_ssize_t total, Py_ssize_t per_unit, Py_ssize_t limit
) noexcept nogil:
    """How many of ``total`` units (of ``per_unit`` multiply-adds each) one
    BLAS call takes so that it stays within ``limit`` (0: no limit)."""
    if limit <= 0 or total * per_unit <= limit:
        return total
    return max(1, limit // per_unit)


cdef inline void forward_product(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out,
    floating* A, floating* W, floating* out, bint own, Py_ssize_t limit
) noexcept nogil:
    """out (n, fan_out) = A (n, fan_in) @ W (fan_in, fan_out).

    ``own`` adds rows of W, so it vectorizes along them; BLAS gets a block
    of output columns per call.
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
        b = block(fan_out, fan_in, limit)
        j = 0
        while j < fan_out:
            gemv("N", min(b, fan_out - j), fan_in, W + j, fan_out, A, out + j)
            j += b
    else:
        b = block(fan_out, n * fan_in, limit)
        j = 0
        while j < fan_out:
            gemm(
                "N", "N", min(b, fan_out - j), n, fan_in, W + j, fan_out, A,
                fan_in, 0, out + j, fan_out,
            )
            j += b


cdef inline void backward_product(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out,
    floating* D, floating* W, floating* out, bint own, Py_ssize_t limit
) noexcept nogil:
    """out (n, fan_in) = D (n, fan_out) @ W.T: the error sent down a layer.

    ``own`` as in forward_product: dot products of rows of W with D's.
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
        b = block(fan_in, fan_out, limit)
        i = 0
        while i < fan_in:
            gemv(
                "T", fan_out, min(b, fan_in - i), W + i * fan_out, fan_out, D,
                out + i,
            )
            i += b
    else:
        b = block(fan_in, n * fan_out, limit)
        i = 0
        while i < fan_in:
            gemm(
                "T", "N", min(b, fan_in - i), n, fan_out, W + i * fan_out, fan_out,
                D, fan_out, 0, out + i, fan_in,
            )
            i += b


cdef inline void sparse_forward_product(
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


cdef inline void column_sums(
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


cdef inline double squared_norm_of(const floating* w, Py_ssize_t size) noexcept nogil:
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


