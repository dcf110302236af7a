# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""A chunk's products cut into tiles: the items that threads share.

A chunk's rows are cut into row blocks of at most ``block_rows`` rows, and
each layer's product into column tiles, so that every BLAS call stays below
``limit`` multiply-adds (which OpenBLAS runs on the calling thread, see
_codes.py). The cuts depend on the batch and the network only, never on the
number of threads: each output element is computed by the same call with
the same operands whichever thread runs it, and a weight gradient tile adds
its row blocks in block order. Results are therefore the same bits on any
number of threads, one included.

Every function here computes one tile, in one BLAS call or in the loop's
own code; the arrays are row-major, as in _products.pxd.
"""

from cython cimport floating

cimport skbatchnet._products as P


cdef inline Py_ssize_t parts(Py_ssize_t total, Py_ssize_t most) noexcept nogil:
    """How many near-equal parts of at most ``most`` units ``total`` needs."""
    if most <= 0 or total <= most:
        return 1
    return (total + most - 1) // most


cdef inline Py_ssize_t cut(Py_ssize_t i, Py_ssize_t total, Py_ssize_t count) noexcept nogil:
    """Start of part ``i`` of ``count`` near-equal parts of ``total``
    (_workspace.chunks' rule: lengths differ by at most one)."""
    return i * total // count


cdef inline Py_ssize_t tile_width(
    Py_ssize_t width, Py_ssize_t per_column, Py_ssize_t limit, Py_ssize_t split_work,
    Py_ssize_t whole_work
) noexcept nogil:
    """Columns per tile of a product of ``width`` output columns, each
    column costing ``per_column`` multiply-adds per call: as many as fit in
    ``limit`` (0: no limit), and half of them when the whole product
    (``whole_work``) reaches ``split_work`` (0: never) and would otherwise
    be one tile, so that a small batch still gives a second thread work.
    Tiles are this wide but the last (``_products.block``'s rule, so a
    one-row batch is cut as before the threads)."""
    cdef Py_ssize_t w = width
    if limit > 0 and per_column * width > limit:
        w = max(1, limit // max(1, per_column))
    if w == width and 0 < split_work <= whole_work and width >= 16:
        w = (width + 1) // 2
    return w


cdef inline Py_ssize_t tile_count(Py_ssize_t width, Py_ssize_t w) noexcept nogil:
    return (width + w - 1) // w


cdef inline Py_ssize_t tile_start(
    Py_ssize_t t, Py_ssize_t width, Py_ssize_t w
) noexcept nogil:
    return min(t * w, width)


cdef inline Py_ssize_t slices(
    Py_ssize_t n, Py_ssize_t per_row, Py_ssize_t limit
) noexcept nogil:
    """Slices of ``n`` rows, each costing ``per_row`` multiply-adds per row,
    so that no call exceeds ``limit`` (0: one slice)."""
    if limit <= 0:
        return 1
    return parts(n, max(1, limit // max(1, per_row)))


cdef inline void forward_tile(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out, Py_ssize_t c0,
    Py_ssize_t c1, floating* A, floating* W, floating* out, bint own
) noexcept nogil:
    """out[:, c0:c1] = A (n, fan_in) @ W[:, c0:c1], in one call."""
    cdef Py_ssize_t r, i, j
    cdef floating a
    cdef floating* o
    cdef floating* w
    if own:
        for r in range(n):
            o = out + r * fan_out
            for j in range(c0, c1):
                o[j] = 0
            for i in range(fan_in):
                a = A[r * fan_in + i]
                w = W + i * fan_out
                for j in range(c0, c1):
                    o[j] += a * w[j]
    elif n == 1:
        P.gemv("N", c1 - c0, fan_in, W + c0, fan_out, A, out + c0)
    else:
        P.gemm(
            "N", "N", c1 - c0, n, fan_in, W + c0, fan_out, A, fan_in, 0, out + c0,
            fan_out,
        )


cdef inline void backward_tile(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out, Py_ssize_t i0,
    Py_ssize_t i1, floating* D, floating* W, floating* out, bint own
) noexcept nogil:
    """out[:, i0:i1] = D (n, fan_out) @ W[i0:i1].T, in one call."""
    cdef Py_ssize_t r, i, j
    cdef floating t
    cdef floating* d
    cdef floating* w
    if own:
        for r in range(n):
            d = D + r * fan_out
            for i in range(i0, i1):
                w = W + i * fan_out
                t = 0
                for j in range(fan_out):
                    t += d[j] * w[j]
                out[r * fan_in + i] = t
    elif n == 1:
        P.gemv("T", fan_out, i1 - i0, W + i0 * fan_out, fan_out, D, out + i0)
    else:
        P.gemm(
            "T", "N", i1 - i0, n, fan_out, W + i0 * fan_out, fan_out, D, fan_out, 0,
            out + i0, fan_in,
        )


cdef inline void gradient_tile(
    Py_ssize_t n, Py_ssize_t fan_in, Py_ssize_t fan_out, Py_ssize_t i0,
    Py_ssize_t i1, floating* A, floating* D, floating* G, bint accumulate, bint own
) noexcept nogil:
    """G[i0:i1] (+)= A[:, i0:i1].T @ D (n, fan_out), in one call."""
    cdef Py_ssize_t i, j, r
    cdef floating a
    cdef floating* row
    cdef floating* d
    if own:
        for i in range(i0, i1):
            row = G + i * fan_out
            if not accumulate:
                for j in range(fan_out):
                    row[j] = 0
            for r in range(n):
                a = A[r * fan_in + i]
                d = D + r * fan_out
                for j in range(fan_out):
                    row[j] += a * d[j]
    else:
        P.gemm(
            "N", "T", fan_out, i1 - i0, n, D, fan_out, A + i0, fan_in,
            1 if accumulate else 0, G + i0 * fan_out, fan_out,
        )


cdef inline void sparse_gradient_tile(
    Py_ssize_t n, Py_ssize_t fan_out, Py_ssize_t c0, Py_ssize_t c1,
    Py_ssize_t fan_in, const P.Sparse* X, const Py_ssize_t* rows,
    const floating* x_data, floating* D, floating* G, bint accumulate
) noexcept nogil:
    """G[:, c0:c1] (+)= X[rows].T @ D[:, c0:c1] for CSR rows: each nonzero
    x_rj adds x_rj * D[r, c0:c1] to row j of G, rows r in order."""
    cdef Py_ssize_t r, p, j
    cdef floating a
    cdef floating* g
    cdef floating* d
    if not accumulate:
        for r in range(fan_in):
            for j in range(c0, c1):
                G[r * fan_out + j] = 0
    for r in range(n):
        d = D + r * fan_out
        for p in range(X.indptr[rows[r]], X.indptr[rows[r] + 1]):
            a = x_data[p]
            g = G + X.indices[p] * fan_out
            for j in range(c0, c1):
                g[j] += a * d[j]
