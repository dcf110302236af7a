# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""A chunk's forward and backward pass, its row blocks and tiles shared by
threads.

One parallel region per chunk runs two phases, each a list of items that any
thread may take (``prange``; its end is the only wait): each row block's
whole pass (gathered, forward, output error and loss, backward, clipped),
then the weight-gradient tiles and the bias gradients. Threads wait for each
other once per phase, not once per layer, which matters when another
process takes a core for a while. The cuts are _tiles.pxd's, fixed by the
batch and the network alone, and the sums that cross items (the loss, the
clipped count) are kept per row block and added in block order after the
region: the same bits on any number of threads. With one thread the region
runs on the calling thread without starting the OpenMP team, which also
keeps a forked child of a threaded process safe (_threads.py).
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

cimport skbatchnet._clip_kernels as C
cimport skbatchnet._kernels as K
cimport skbatchnet._products as P
cimport skbatchnet._tiles as T
from ._plan cimport Config
from ._products cimport Sparse


cdef inline double chunk_work(const Config* cfg, Py_ssize_t n, bint weights) noexcept nogil:
    """The multiply-adds of a chunk's products, as the Ctrl-C watch counts
    them (_codes.CHECK_WORK): forward, backward below the first layer, and
    the weight gradients unless a one-row batch leaves them to the update."""
    cdef Py_ssize_t l
    cdef double work = 0, layer
    for l in range(cfg.shape.n_layers):
        layer = <double>n * cfg.shape.units[l] * cfg.shape.units[l + 1]
        work += layer * (1 + (l > 0) + weights)
    return work


cdef inline double chunk_pass(
    const Config* cfg, floating* params, const floating* X, const Sparse* sparse,
    const floating* Y, const floating* sw, const Py_ssize_t* rows, Py_ssize_t n,
    floating* c_rows, floating c_const, floating* Xb, floating* acts,
    floating* deltas, floating* grad, bint first, bint weights, double* loss_parts,
    double* row_parts, floating* scratch, int n_threads, long* clipped,
    double* squares
) noexcept nogil:
    """Forward and backward pass of ``n`` rows; returns sum_i s_i loss_i.

    Fills ``grad`` with sum_i c_i grad(loss_i), adding to it unless
    ``first``, and the weight gradients only if ``weights`` (a one-row
    batch leaves them to the update); each example's gradient clipped to
    ``cfg.max_norm`` when positive, the rows clipped added to ``clipped``.
    Under ``cfg.track_noise``, sum_i ||c_i g_i||^2 is added to ``squares``.
    Row block b's loss and its clipped rows (or that sum) pass through
    ``loss_parts[b]`` and ``row_parts[b]``. ``scratch`` holds
    ``n_features`` zeros per thread (CSR norms).
    """
    cdef const Py_ssize_t* units = cfg.shape.units
    cdef const Py_ssize_t* unit_offsets = cfg.shape.unit_offsets
    cdef Py_ssize_t L = cfg.shape.n_layers, d = cfg.shape.n_features
    cdef bint by_entries = sparse != NULL and n > 1
    cdef Py_ssize_t limit = 0, blocks = 1, it, b, l, p, rows_b, gitems, widest
    cdef floating* inputs
    cdef double loss_sum = 0
    # A chunk too small for threads to share (_codes.THREAD_WORK) is one
    # block, its products cut only as OpenBLAS's size rule asks.
    cdef bint shared = chunk_work(cfg, n, weights) >= cfg.thread_work
    cdef Py_ssize_t split = cfg.split_work if shared else 0
    if n < cfg.split_rows:
        limit = cfg.gemv_limit if n == 1 else cfg.gemm_limit
        if cfg.block_rows > 0 and shared:
            # Blocks short enough that one column of any product's output
            # fits in a call (a CSR input's product is the loop's own).
            widest = 1
            for l in range(1 if by_entries else 0, L + 1):
                widest = max(widest, units[l])
            blocks = T.parts(n, min(cfg.block_rows, max(1, limit // widest)))
    rows_b = (n + blocks - 1) // blocks  # the tallest block

    # One sparse row is written out dense, as the update reads its every
    # entry; one dense row is read where it is; more rows are gathered (CSR
    # ones are read where they are, entry by entry).
    if sparse != NULL:
        inputs = Xb
        if n == 1:
            memset(Xb, 0, d * sizeof(floating))
            for p in range(sparse.indptr[rows[0]], sparse.indptr[rows[0] + 1]):
                Xb[sparse.indices[p]] += X[p]
    elif n == 1:
        inputs = <floating*>X + rows[0] * d
    else:
        inputs = Xb
    gitems = 0
    if weights:
        for l in range(L):
            gitems += T.tile_count(
                units[l + 1] if l == 0 and by_entries else units[l],
                _gradient_tile_width(cfg, l, n, limit, split, by_entries),
            )

    # Each row block's whole forward and backward pass (no thread waits for
    # another until the gradients), then the parameters' gradients: weight
    # tiles, each adding its slices of rows in order, and one item per
    # layer's biases. One thread runs the same items in order, without
    # starting the OpenMP team.
    if n_threads > 1 and shared:
        with parallel(num_threads=n_threads):
            for b in prange(blocks, schedule="dynamic"):
                loss_parts[b] = _block_pass(
                    cfg, params, X, sparse, Y, sw, rows, n, T.cut(b, n, blocks),
                    T.cut(b + 1, n, blocks), rows_b, limit, c_rows, c_const, inputs,
                    acts, deltas, &row_parts[b], scratch + threadid() * d, by_entries,
                )
            for it in prange(gitems + L, schedule="dynamic"):
                _gradient_item(
                    cfg, it, gitems, n, limit, split, inputs, sparse, rows, X, acts,
                    deltas, grad, first, by_entries,
                )
    else:
        for b in range(blocks):
            loss_parts[b] = _block_pass(
                cfg, params, X, sparse, Y, sw, rows, n, T.cut(b, n, blocks),
                T.cut(b + 1, n, blocks), rows_b, limit, c_rows, c_const, inputs,
                acts, deltas, &row_parts[b], scratch, by_entries,
            )
        for it in range(gitems + L):
            _gradient_item(
                cfg, it, gitems, n, limit, split, inputs, sparse, rows, X, acts,
                deltas, grad, first, by_entries,
            )
    for b in range(blocks):
        loss_sum += loss_parts[b]
        if cfg.max_norm > 0:
            clipped[0] += <long>row_parts[b]
        elif cfg.track_noise:
            squares[0] += row_parts[b]
    return loss_sum


cdef inline double _block_pass(
    const Config* cfg, floating* params, const floating* X, const Sparse* sparse,
    const floating* Y, const floating* sw, const Py_ssize_t* rows, Py_ssize_t n,
    Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t rows_b, Py_ssize_t limit,
    const floating* c_rows, floating c_const, floating* inputs, floating* acts,
    floating* deltas, double* row_sum, floating* scratch, bint by_entries
) noexcept nogil:
    """Rows r0 to r1 (of the chunk's n): gathered, forward, output error and
    loss, backward, clipped; returns their sum_i s_i loss_i. Each layer's
    product runs in column tiles, one BLAS call each. ``row_sum`` receives
    the rows clipped, or under ``cfg.track_noise`` sum_i ||c_i g_i||^2."""
    cdef const Py_ssize_t* units = cfg.shape.units
    cdef const Py_ssize_t* unit_offsets = cfg.shape.unit_offsets
    cdef Py_ssize_t L = cfg.shape.n_layers, d = cfg.shape.n_features
    cdef Py_ssize_t l, t, r, w, c0, c1, fan_in, fan_out, m = r1 - r0
    cdef floating* biases = params + cfg.shape.n_coefs
    cdef floating* W
    cdef floating* A
    cdef floating* Z
    cdef floating* D
    cdef bint own
    cdef double loss
    if sparse == NULL and n > 1:
        for r in range(r0, r1):
            memcpy(inputs + r * d, X + rows[r] * d, d * sizeof(floating))

    # Forward: each hidden buffer holds f(Z), the last one the logits Z.
    for l in range(L):
        fan_in, fan_out = units[l], units[l + 1]
        A = inputs if l == 0 else acts + n * unit_offsets[l - 1]
        Z = acts + n * unit_offsets[l] + r0 * fan_out
        W = params + cfg.shape.coef_offsets[l]
        own = n * fan_in * fan_out <= cfg.tiny_product
        if l == 0 and by_entries:
            P.sparse_forward_product(m, fan_out, sparse, rows + r0, X, params, Z)
        else:
            w = fan_out if own else T.tile_width(fan_out, rows_b * fan_in, limit, 0, 0)
            for t in range(T.tile_count(fan_out, w)):
                c0, c1 = T.tile_start(t, fan_out, w), T.tile_start(t + 1, fan_out, w)
                T.forward_tile(m, fan_in, fan_out, c0, c1, A + r0 * fan_in, W, Z, own)
        K.bias_activation(
            cfg.activation if l < L - 1 else K.IDENTITY, m, fan_out, Z,
            biases + unit_offsets[l],
        )

    # Output error (f(Z) - Y) scaled by c_i, and the losses, row by row.
    # Clipping needs each example's own error first; c_i joins after.
    loss = _output_rows(
        cfg, r0, r1, acts + n * unit_offsets[L - 1], deltas + n * unit_offsets[L - 1],
        Y, sw, rows, c_rows, c_const,
    )

    # Backward: every layer's error.
    for l in range(L - 1, 0, -1):
        fan_in, fan_out = units[l], units[l + 1]
        D = deltas + n * unit_offsets[l - 1] + r0 * fan_in
        own = n * fan_in * fan_out <= cfg.tiny_product
        w = fan_in if own else T.tile_width(fan_in, rows_b * fan_out, limit, 0, 0)
        for t in range(T.tile_count(fan_in, w)):
            c0, c1 = T.tile_start(t, fan_in, w), T.tile_start(t + 1, fan_in, w)
            T.backward_tile(
                m, fan_in, fan_out, c0, c1,
                deltas + n * unit_offsets[l] + r0 * fan_out,
                params + cfg.shape.coef_offsets[l], D, own,
            )
        K.derivative(
            cfg.activation, m * fan_in, acts + n * unit_offsets[l - 1] + r0 * fan_in, D)
    if cfg.max_norm > 0:
        row_sum[0] = C.clip_rows(
            &cfg.shape, n, r0, r1, NULL if by_entries else inputs, sparse, rows, X,
            scratch, acts, deltas, c_rows, c_const, cfg.max_norm,
        )
    elif cfg.track_noise:  # never with clipping (EpochPlan)
        row_sum[0] = C.sum_of_row_squares(
            &cfg.shape, n, r0, r1, NULL if by_entries else inputs, sparse, rows, X,
            scratch, acts, deltas,
        )
    return loss


cdef inline double _output_rows(
    const Config* cfg, Py_ssize_t r0, Py_ssize_t r1, floating* Z, floating* delta,
    const floating* Y, const floating* sw, const Py_ssize_t* rows,
    const floating* c_rows, floating c_const
) noexcept nogil:
    """Rows r0 to r1's output error (f(Z) - Y) c_i and sum_i s_i loss_i;
    under clipping c_i joins later (C.clip_rows), after each row's norm."""
    cdef Py_ssize_t r, k = cfg.shape.n_outputs
    cdef double loss = 0
    cdef floating row_loss
    cdef bint clip = cfg.max_norm > 0
    for r in range(r0, r1):
        row_loss = K.output_row(
            cfg.loss, Z + r * k, Y + rows[r] * k, delta + r * k,
            1 if clip else (c_rows[r] if c_rows != NULL else c_const), k,
        )
        loss += <double>sw[rows[r]] * row_loss if sw != NULL else row_loss
    return loss


cdef inline Py_ssize_t _gradient_tile_width(
    const Config* cfg, Py_ssize_t l, Py_ssize_t n, Py_ssize_t limit, Py_ssize_t split,
    bint by_entries
) noexcept nogil:
    """Tile width of layer l's weight gradient: ranges of its rows, each summing
    slices of ``cfg.block_rows`` rows or more (ranges of its columns for a
    CSR input, whose products are the loop's own); two at least for a
    gradient of ``split`` multiply-adds or more (0: any)."""
    cdef Py_ssize_t fan_in = cfg.shape.units[l], fan_out = cfg.shape.units[l + 1]
    cdef Py_ssize_t work = n * fan_in * fan_out
    if limit <= 0:  # products left whole to BLAS: one tile
        split = 0
    if l == 0 and by_entries:
        return T.tile_width(fan_out, 0, 0, split, work)
    if work <= cfg.tiny_product:
        return fan_in
    return T.tile_width(
        fan_in, min(n, max(1, cfg.block_rows)) * fan_out, limit, split, work)


cdef inline void _gradient_item(
    const Config* cfg, Py_ssize_t it, Py_ssize_t gitems, Py_ssize_t n,
    Py_ssize_t limit, Py_ssize_t split, floating* inputs, const Sparse* sparse,
    const Py_ssize_t* rows, const floating* X, floating* acts, floating* deltas,
    floating* grad, bint first, bint by_entries
) noexcept nogil:
    """Item ``it`` of the gradients: below ``gitems``, a weight-gradient
    tile, counting the layers' tiles in order, its rows of the chunk in
    slices as tall as ``limit`` allows, added in order; from ``gitems`` on,
    a layer's bias gradient."""
    cdef const Py_ssize_t* units = cfg.shape.units
    cdef const Py_ssize_t* unit_offsets = cfg.shape.unit_offsets
    cdef Py_ssize_t l, w, count, s, r0, r1, c0, c1, fan_in, fan_out
    cdef floating* A
    cdef floating* D
    cdef floating* G
    cdef bint own
    if it >= gitems:
        l = it - gitems
        P.column_sums(
            n, units[l + 1], deltas + n * unit_offsets[l],
            grad + cfg.shape.n_coefs + unit_offsets[l], not first,
        )
        return
    for l in range(cfg.shape.n_layers):
        fan_in, fan_out = units[l], units[l + 1]
        w = _gradient_tile_width(cfg, l, n, limit, split, by_entries)
        count = T.tile_count(fan_out if l == 0 and by_entries else fan_in, w)
        if it >= count:
            it -= count
            continue
        D = deltas + n * unit_offsets[l]
        G = grad + cfg.shape.coef_offsets[l]
        if l == 0 and by_entries:
            T.sparse_gradient_tile(
                n, fan_out, T.tile_start(it, fan_out, w),
                T.tile_start(it + 1, fan_out, w), fan_in, sparse, rows, X, D, G,
                not first,
            )
            return
        A = inputs if l == 0 else acts + n * unit_offsets[l - 1]
        own = n * fan_in * fan_out <= cfg.tiny_product
        c0, c1 = T.tile_start(it, fan_in, w), T.tile_start(it + 1, fan_in, w)
        count = 1 if own else T.slices(n, (c1 - c0) * fan_out, limit)
        for s in range(count):
            r0, r1 = T.cut(s, n, count), T.cut(s + 1, n, count)
            T.gradient_tile(
                r1 - r0, fan_in, fan_out, c0, c1, A + r0 * fan_in, D + r0 * fan_out,
                G, not first or s > 0, own,
            )
        return
