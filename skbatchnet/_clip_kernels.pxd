# cython: language_level=3, cdivision=True, boundscheck=False, wraparound=False
"""Per-example clipping in the compiled loop: _clipping.py, row by row.

Example i's loss gradient has the squared norm
``sum_l ||d_i^l||^2 (||a_i^(l-1)||^2 + 1)`` (each layer's error row times
its input row, plus the bias), read off the chunk's buffers after the
backward pass has filled every layer's error. Clipping to C scales row i of
every layer's error by ``c_i min(1, C / ||g_i||)`` before the weight
gradients are formed. The sums run in double, whatever the network's type.
"""

from cython cimport floating
from libc.math cimport sqrt
from libc.string cimport memset

cimport skbatchnet._products as P
from skbatchnet._products cimport Sparse
from skbatchnet._updates cimport Shape


cdef inline double _sparse_row_squares(
    const Sparse* sparse, const floating* values, Py_ssize_t row, floating* scratch
) noexcept nogil:
    """||x||^2 of a CSR row, its duplicate entries summed first (they stand for
    their sum). ``scratch`` holds zeros on entry and on return."""
    cdef Py_ssize_t p, j
    cdef Py_ssize_t lo = sparse.indptr[row], hi = sparse.indptr[row + 1]
    cdef double total = 0, v
    for p in range(lo, hi):
        scratch[sparse.indices[p]] += values[p]
    # Each column is read once: the first visit takes its sum and clears it.
    for p in range(lo, hi):
        j = sparse.indices[p]
        v = scratch[j]
        total += v * v
        scratch[j] = 0
    return total


cdef inline double row_squares(
    const Shape* shape, Py_ssize_t n, Py_ssize_t i, const floating* inputs,
    const Sparse* sparse, const Py_ssize_t* rows, const floating* values,
    floating* scratch, const floating* acts, const floating* deltas
) noexcept nogil:
    """||g_i||^2 of row i of a chunk of ``n`` rows, from its buffers.

    The input rows are ``inputs`` (dense, ``n_features`` apart), or with
    ``inputs`` NULL the CSR rows ``rows`` of ``sparse`` and ``values``, whose
    norms use ``scratch`` (``n_features`` zeros, left zeros).
    """
    cdef Py_ssize_t l, fan_in, fan_out, d = shape.n_features
    cdef const Py_ssize_t* offsets = shape.unit_offsets
    cdef double squared = 0, a2
    for l in range(shape.n_layers):
        fan_in, fan_out = shape.units[l], shape.units[l + 1]
        if l > 0:
            a2 = P.squared_norm_of(acts + n * offsets[l - 1] + i * fan_in, fan_in)
        elif inputs != NULL:
            a2 = P.squared_norm_of(inputs + i * d, d)
        else:
            a2 = _sparse_row_squares(sparse, values, rows[i], scratch)
        squared += P.squared_norm_of(deltas + n * offsets[l] + i * fan_out, fan_out) * (
            a2 + 1)
    return squared


cdef inline double sum_of_row_squares(
    const Shape* shape, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi,
    const floating* inputs, const Sparse* sparse, const Py_ssize_t* rows,
    const floating* values, floating* scratch, const floating* acts,
    const floating* deltas
) noexcept nogil:
    """sum_i ||g_i||^2 over rows ``lo <= i < hi`` (as row_squares): the
    gradient noise scale's second moment (_epoch.pyx)."""
    cdef Py_ssize_t i
    cdef double total = 0
    if inputs == NULL:
        memset(scratch, 0, shape.n_features * sizeof(floating))
    for i in range(lo, hi):
        total += row_squares(
            shape, n, i, inputs, sparse, rows, values, scratch, acts, deltas)
    return total


cdef inline long clip_rows(
    const Shape* shape, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi,
    const floating* inputs, const Sparse* sparse,
    const Py_ssize_t* rows, const floating* values, floating* scratch,
    const floating* acts, floating* deltas, const floating* c_rows,
    floating c_const, double max_norm
) noexcept nogil:
    """Scale row i (``lo <= i < hi`` of a chunk of ``n`` rows) of every
    layer's error by ``c_i min(1, C / ||g_i||)``; returns how many rows were
    shrunk. The rows' inputs as in row_squares.
    """
    cdef Py_ssize_t L = shape.n_layers, l, i, j, fan_out
    cdef const Py_ssize_t* offsets = shape.unit_offsets
    cdef double norm, factor
    cdef floating* row
    cdef floating f
    cdef long clipped = 0
    if inputs == NULL:
        memset(scratch, 0, shape.n_features * sizeof(floating))
    for i in range(lo, hi):
        norm = sqrt(row_squares(
            shape, n, i, inputs, sparse, rows, values, scratch, acts, deltas))
        factor = c_rows[i] if c_rows != NULL else c_const
        if norm > max_norm:
            factor = factor * (max_norm / norm)
            clipped += 1
        # In the network's type, as the numpy tier scales: a vectorizable pass.
        f = <floating>factor
        for l in range(L):
            fan_out = shape.units[l + 1]
            row = deltas + n * offsets[l] + i * fan_out
            for j in range(fan_out):
                row[j] = row[j] * f
    return clipped
