# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False, nonecheck=False
"""The compiled epoch: stochastic training on dense or CSR input without the GIL.

One call of :func:`run_epoch` runs every minibatch step of an epoch: gather
the batch's rows, forward pass, output error and loss, backward pass, the
optimizer's update and the weight average, then the next batch. Python gets
control back once per epoch (and, briefly, every few milliseconds of work
to look for Ctrl-C: ``_signals.pxd``).

What stays the same through a fit is built and checked once, as the typed
objects of ``_plan.pyx`` (an epoch plan, an optimizer state, an average
state); each epoch then takes only its order of rows.

The math is the numpy specification's (:func:`skbatchnet._training.run_epoch`
and what it calls), restated in the same order of operations and tested
against it to rounding; the kernels of each option live in ``_kernels.pxd``,
the products in ``_products.pxd``, the optimizers' passes and the step over
the network in ``_updates.pxd`` (``_chunk`` leaves a one-row batch's weight
gradient to that step, which forms it as it reads it, except under noise,
which the whole gradient receives), the clipping in ``_clip_kernels.pxd``,
the DP noise in ``_noise.pxd``.
"""

from collections import namedtuple

import numpy as np

from cython cimport floating
from libc.math cimport isfinite, sqrt
from libc.string cimport memcpy, memset

cimport skbatchnet._clip_kernels as C
cimport skbatchnet._kernels as K
cimport skbatchnet._noise as N
cimport skbatchnet._products as P
cimport skbatchnet._updates as U
from libc.stdint cimport uint64_t
from numpy.random cimport bitgen_t
from ._plan cimport (
    AverageState, Config, Counters, EpochPlan, NoiseSource, OptimizerState,
)
from ._products cimport Sparse
from ._signals cimport Watch, worked
from ._updates cimport Shape, Solver


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

__all__ = ["EpochResult", "cpu_has_avx2", "run_epoch"]


def cpu_has_avx2():
    """Whether this CPU, and the operating system, can run AVX2 instructions.

    Asked before importing ``skbatchnet._epoch_avx2``, which would stop the
    process on a CPU without them.
    """
    return bool(skbatchnet_cpu_has_avx2())


EpochResult = namedtuple(
    "EpochResult",
    ["status", "batch", "loss_sum", "weight_sum", "seen", "steps", "clipped"],
)
EpochResult.__doc__ = """What one compiled epoch did (the runner in _compiled.py
raises for its non-finite and interrupted statuses, and hands on the rest).

status : int
    A :class:`skbatchnet._codes.Status`: OK, NONFINITE_LOSS, NONFINITE_WEIGHTS
    or INTERRUPTED.
batch : int
    With a non-finite status, the 1-based number of the batch at fault,
    counting skipped zero-weight batches.
loss_sum, weight_sum : float
    Sum over the steps taken of ``weight * loss`` and of ``weight``; the
    epoch loss is their ratio.
seen : int
    Rows seen, including those of skipped zero-weight batches.
steps : int
    Optimizer steps taken.
clipped : int
    Rows of those steps whose gradient was clipped.
"""


cdef double _chunk(
    const Config* cfg, floating* params, const floating* X, const Sparse* sparse,
    const floating* Y, const floating* sw, const Py_ssize_t* rows, Py_ssize_t n,
    floating* c_rows,
    floating c_const, floating* Xb, floating* acts, floating* deltas,
    floating* grad, bint first, Watch* watch, long* clipped
) noexcept nogil:
    """Forward and backward pass of ``n`` rows; returns sum_i s_i loss_i.

    Fills ``grad`` with sum_i c_i grad(loss_i) (adds to it unless ``first``),
    each example's gradient clipped to ``cfg.max_norm`` when it is positive
    (adding the rows clipped to ``clipped``);
    the weight decay is added later, in the update. With ``sparse``, ``X``
    holds the values of a CSR matrix of that structure. A batch of one row
    leaves its weight gradients out, unless the step adds noise: the update
    forms them (``U.network_update``).
    Counts its products' work in ``watch`` and stops, with an unfinished
    gradient, when a signal handler raises there.
    """
    cdef const Py_ssize_t* units = cfg.shape.units
    cdef const Py_ssize_t* coef_offsets = cfg.shape.coef_offsets
    cdef const Py_ssize_t* unit_offsets = cfg.shape.unit_offsets
    cdef Py_ssize_t L = cfg.shape.n_layers, l, i, fan_in, fan_out
    cdef Py_ssize_t k = cfg.shape.n_outputs, d = cfg.shape.n_features
    cdef floating* A
    cdef floating* inputs
    cdef floating* Z
    cdef floating* delta
    cdef floating* below
    cdef floating* biases = params + cfg.shape.n_coefs
    cdef floating* gbiases = grad + cfg.shape.n_coefs
    cdef floating ci
    cdef double loss_sum = 0
    cdef floating row_loss
    cdef Py_ssize_t p
    cdef bint by_entries = sparse != NULL and n > 1
    cdef bint clip = cfg.max_norm > 0
    # Multiply-adds of a layer's product (of the first layer's by entries).
    cdef double work, first_work = 0
    # A small batch's products go to BLAS in calls small enough to run on one
    # thread (SMALL_BATCH_ROWS in _codes.py).
    cdef Py_ssize_t limit = 0
    if n < cfg.split_rows:
        limit = cfg.gemv_limit if n == 1 else cfg.gemm_limit

    # Gather the rows: one dense row is read where it is; one sparse row is
    # written out dense, as the update reads its every entry;
    # more sparse rows are read where they are, entry by entry (by_entries).
    if sparse != NULL:
        inputs = Xb
        if n == 1:
            memset(Xb, 0, d * sizeof(floating))
            for p in range(sparse.indptr[rows[0]], sparse.indptr[rows[0] + 1]):
                Xb[sparse.indices[p]] += X[p]
        elif by_entries:
            for i in range(n):
                first_work += sparse.indptr[rows[i] + 1] - sparse.indptr[rows[i]]
            first_work *= units[1]
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
            P.sparse_forward_product(n, fan_out, sparse, rows, X, params, acts)
        else:
            P.forward_product(
                n, fan_in, fan_out, A, params + coef_offsets[l],
                acts + n * unit_offsets[l], n * fan_in * fan_out <= cfg.tiny_product,
                limit,
            )
        A = acts + n * unit_offsets[l]
        K.bias_activation(
            cfg.activation if l < L - 1 else K.IDENTITY,
            n, fan_out, A, biases + unit_offsets[l],
        )
        work = first_work if l == 0 and by_entries else <double>n * fan_in * fan_out
        if worked(watch, work):
            return 0

    # Output error (f(Z) - Y) scaled by c_i, and the losses, row by row.
    # Clipping needs each example's own error first; c_i joins after.
    Z = A
    delta = deltas + n * unit_offsets[L - 1]
    for i in range(n):
        ci = 1 if clip else (c_rows[i] if c_rows != NULL else c_const)
        row_loss = K.output_row(
            cfg.loss, Z + i * k, Y + rows[i] * k, delta + i * k, ci, k
        )
        if sw != NULL:
            loss_sum += <double>sw[rows[i]] * row_loss
        else:
            loss_sum += row_loss

    # Backward: every layer's error.
    for l in range(L - 1, 0, -1):
        fan_in, fan_out = units[l], units[l + 1]
        delta = deltas + n * unit_offsets[l]
        below = deltas + n * unit_offsets[l - 1]
        P.backward_product(
            n, fan_in, fan_out, delta, params + coef_offsets[l], below,
            n * fan_in * fan_out <= cfg.tiny_product, limit,
        )
        K.derivative(cfg.activation, n * fan_in, acts + n * unit_offsets[l - 1], below)
        if worked(watch, <double>n * fan_in * fan_out):
            return 0
    if clip:
        clipped[0] += C.clip_rows(
            &cfg.shape, n, NULL if by_entries else inputs, sparse, rows, X, Xb,
            acts, deltas, c_rows, c_const, cfg.max_norm,
        )

    # The parameters' gradients.
    for l in range(L - 1, -1, -1):
        fan_in, fan_out = units[l], units[l + 1]
        delta = deltas + n * unit_offsets[l]
        A = inputs if l == 0 else acts + n * unit_offsets[l - 1]
        if l == 0 and by_entries:
            P.sparse_weight_gradient(
                n, fan_in, fan_out, sparse, rows, X, delta, grad, not first
            )
        elif n > 1 or cfg.noise_std > 0:
            # One row's weight gradient, the outer product A.T delta, is left
            # to the update, which forms it as it reads it; noise needs it
            # written out, to be added to.
            P.weight_gradient(
                n, fan_in, fan_out, A, delta, grad + coef_offsets[l], not first,
                n * fan_in * fan_out <= cfg.tiny_product, limit,
            )
        work = first_work if l == 0 and by_entries else <double>n * fan_in * fan_out
        if worked(watch, work * (n > 1 or cfg.noise_std > 0)):
            return 0
        P.column_sums(n, fan_out, delta, gbiases + unit_offsets[l], not first)
    return loss_sum


cdef int _epoch(
    const Config* cfg, const Solver* solver, floating* params,
    const floating* X, const Sparse* sparse, const floating* Y,
    const floating* sw, const Py_ssize_t* order, const Py_ssize_t* bounds,
    Py_ssize_t n_batches, floating* state1, floating* state2, floating* mean,
    long average_start, floating* work, floating* c_rows, bitgen_t* rng,
    const N.Ziggurat* noise_table, uint64_t* noise_block,
    Counters* out
) except -1 nogil:
    cdef Py_ssize_t hidden = cfg.shape.unit_offsets[cfg.shape.n_layers]
    cdef floating* Xb = work
    cdef floating* acts = Xb + (
        1 if sparse != NULL else cfg.chunk_rows) * cfg.shape.n_features
    cdef floating* deltas = acts + cfg.chunk_rows * hidden
    cdef floating* grad = deltas + cfg.chunk_rows * hidden
    cdef Py_ssize_t b, i, n, start, stop, n_chunks, chunk, lo, hi, counted
    cdef double weight, scale = 0, c_total = 0, c_const = 0
    cdef double decay, loss_sum, loss, norm, inverse
    cdef long since_steps = 0
    cdef Watch watch
    cdef floating* c_ptr
    cdef bint averaging = mean != NULL
    # Poisson batches: the batch's size and weight are random (and, under
    # noise, private), so the divisor of 'unbiased' and the penalty of 'sum'
    # are their expectations, and every batch steps, empty ones included
    # (reduction.py); except under 'mean', which has no value for them.
    cdef bint poisson = cfg.expected_rows > 0
    cdef double expected = cfg.expected_rows * cfg.weight_per_row
    cdef bint every_batch = poisson and cfg.reduction != K.MEAN
    watch.work, watch.budget, watch.raised = 0, cfg.check_work, False

    # The optimizer's gradient scale (_optimizers: gradient_scale), folded
    # into the reduction coefficients.
    if solver.code == K.SGD:
        scale = solver.learning_rate
    elif solver.code == K.ADAM:
        scale = 1 - solver.beta_1
    norm = P.squared_norm_of(params, cfg.shape.n_coefs) if cfg.alpha != 0 else 0
    for b in range(n_batches):
        start, stop = bounds[2 * b], bounds[2 * b + 1]
        n = stop - start
        # The batch's weight and reduction coefficients
        # (reduction.reduction_coefficients), with the gradient scale.
        c_ptr = NULL
        if n == 0 and not every_batch:
            # An empty batch: no gradient to follow.
            continue
        if sw == NULL:
            weight = n
            if cfg.reduction == K.MEAN:
                c_const, c_total = (1.0 / n) * scale, scale
            elif cfg.reduction == K.SUM:
                c_const, c_total = scale, (expected if poisson else n) * scale
            elif cfg.reduction == K.UNBIASED:
                c_const = (1.0 / (expected if poisson else n * cfg.weight_per_row)) * scale
                c_total = scale
        else:
            weight = 0
            for i in range(n):
                weight += sw[order[start + i]]
            if weight == 0 and cfg.reduction != K.UNBIASED and not every_batch:
                # No weight, no gradient to follow; the rows still count.
                # 'unbiased' steps on the penalty alone (reduction.py).
                out.seen += n
                continue
            c_ptr = c_rows
            if cfg.reduction == K.MEAN:
                for i in range(n):
                    c_rows[i] = <floating>((sw[order[start + i]] / weight) * scale)
                c_total = scale
            elif cfg.reduction == K.SUM:
                for i in range(n):
                    c_rows[i] = <floating>(sw[order[start + i]] * scale)
                c_total = (expected if poisson else weight) * scale
            elif cfg.reduction == K.UNBIASED:
                inverse = 1.0 / (expected if poisson else n * cfg.weight_per_row)
                for i in range(n):
                    c_rows[i] = <floating>((sw[order[start + i]] * inverse) * scale)
                c_total = scale
        decay = cfg.alpha * c_total / cfg.total_weight

        # Chunks of at most chunk_rows rows, of lengths differing by at most
        # one (_workspace.chunks); their gradients add up.
        n_chunks = (n + cfg.chunk_rows - 1) // cfg.chunk_rows
        loss_sum = 0
        if n == 0:  # a step of the penalty (and noise) alone
            memset(grad, 0, cfg.shape.n_params * sizeof(floating))
        for chunk in range(n_chunks):
            lo = chunk * n // n_chunks
            hi = (chunk + 1) * n // n_chunks
            loss_sum += _chunk(
                cfg, params, X, sparse, Y, sw, order + start + lo, hi - lo,
                c_ptr + lo if c_ptr != NULL else NULL, <floating>c_const,
                Xb, acts, deltas, grad, chunk == 0, &watch, &out.clipped,
            )
            if watch.raised:
                return -1  # the handler's exception, set: Cython raises it

        loss = loss_sum / weight if weight != 0 else 0.0
        if cfg.alpha != 0:
            loss += 0.5 * cfg.alpha * norm / cfg.total_weight
        if not isfinite(loss):
            out.status = K.NONFINITE_LOSS
            out.batch = b + 1
            return 0
        if rng != NULL:
            # DP-SGD: noise on every coordinate, in the optimizer's scale.
            N.add_noise(
                rng, noise_table, noise_block, grad, cfg.shape.n_params,
                cfg.noise_std * scale,
            )

        out.steps += 1
        out.adam_t += 1
        # Under noise a batch's size is private: rows count as expected.
        counted = <Py_ssize_t>cfg.expected_rows if rng != NULL else n
        if averaging:
            out.samples_seen += counted
        # ||W||^2 at the weights the next step starts from.
        norm = U.network_update(
            &cfg.shape, solver, cfg.alpha != 0, params, grad, decay, state1, state2,
            out.adam_t,
            NULL if n != 1 or rng != NULL else (
                Xb if sparse != NULL
                else <floating*>X + order[start] * cfg.shape.n_features
            ),
            acts, deltas,
        )
        if averaging and out.samples_seen >= average_start:
            out.n_averaged += 1
            U.average_pass(mean, params, cfg.shape.n_params, <floating>out.n_averaged)
        out.loss_sum += weight * loss
        out.weight_sum += weight
        out.seen += counted

        since_steps += 1
        if since_steps >= cfg.check_steps:
            since_steps = 0
            watch.work = watch.budget  # look now, whatever the work
        if worked(&watch, cfg.shape.n_params):
            return -1

    # A step's result is checked by the next step's loss; the last step's here.
    for i in range(cfg.shape.n_params):
        if not isfinite(params[i]):
            out.status = K.NONFINITE_WEIGHTS
            out.batch = n_batches
            break
    return 0


def run_epoch(
    EpochPlan plan not None, OptimizerState state not None, AverageState average,
    order=None, bounds=None, NoiseSource noise=None,
):
    """Run one epoch of minibatch steps, without the GIL.

    Parameters
    ----------
    plan : EpochPlan
    state : OptimizerState
        Of the plan's dtype and parameter count; updated in place.
    average : AverageState or None
        Updated in place; None trains without averaging.
    order : ndarray of int, optional
        Row indices in the epoch's order (the Minibatcher's permutation);
        None visits the rows as stored.
    bounds : array of shape (n_batches, 2), optional
        This epoch's batches, if not the plan's; none may be wider than the
        plan's ``max_rows``. With Poisson batches (the plan's
        ``expected_rows``) they may be empty.
    noise : NoiseSource, optional
        The generator of the DP noise, required when the plan has
        ``noise_std > 0`` and refused otherwise; its BitGenerator's lock is
        held for the epoch, whose draws advance it in place.

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
    >>> plan = EpochPlan(
    ...     net.layer_units, X, Y, None, [[0, 4], [4, 8]], activation=2, loss=0,
    ...     reduction=0, alpha=0.0, total_weight=8.0, chunk_rows=4,
    ... )
    >>> state = OptimizerState(
    ...     0, net.parameters, learning_rate=0.1,
    ...     velocity=np.zeros_like(net.parameters),
    ... )
    >>> result = run_epoch(plan, state, None)
    >>> result.status, result.steps, result.seen
    (0, 2, 8)
    """
    cdef Counters out
    cdef const Py_ssize_t[::1] rows
    cdef const Py_ssize_t[:, ::1] spans
    cdef Py_ssize_t n_batches
    cdef Sparse* sparse = &plan.csr if plan.sparse else NULL
    cdef char* mean = NULL
    cdef long start = 1
    cdef const Py_ssize_t* row_ptr = NULL
    cdef bitgen_t* rng = NULL
    cdef const N.Ziggurat* table = NULL
    cdef uint64_t* block = NULL
    plan.check_noise(noise)
    if state.dtype != plan.dtype or state.params.shape[0] != plan.cfg.shape.n_params:
        raise ValueError(
            f"The optimizer state holds {state.params.shape[0]} {state.dtype} "
            f"parameters; the plan trains {plan.cfg.shape.n_params} {plan.dtype}."
        )
    if average is not None:
        if average.mean.dtype != plan.dtype or average.mean.shape != state.params.shape:
            raise ValueError("The average must be shaped like the parameters.")
        mean, start = average.m, average.start
    rows, spans = plan.epoch_rows(order, bounds)
    if rows.shape[0]:  # Poisson batches may all be empty
        row_ptr = &rows[0]
    lock = None
    if noise is not None:
        rng, lock = noise.rng, noise.bit_generator.lock
        table, block = &noise.table, noise.block
    out.status = K.OK
    out.batch = out.seen = out.steps = out.clipped = 0
    out.loss_sum = out.weight_sum = 0
    out.adam_t = state.t
    out.n_averaged = average.n_averaged if average is not None else 0
    out.samples_seen = average.samples_seen if average is not None else 0
    n_batches = spans.shape[0]
    if n_batches:
        if lock is not None:  # numpy's own draws hold it too
            lock.acquire()
        try:
            if plan.dtype == np.float32:
                with nogil:
                    _epoch(
                        &plan.cfg, &state.solver, <float*>state.p, <float*>plan.x,
                        sparse, <float*>plan.y, <float*>plan.sw, row_ptr,
                        &spans[0, 0], n_batches, <float*>state.s1, <float*>state.s2,
                        <float*>mean, start, <float*>plan.work, <float*>plan.c_rows,
                        rng, table, block, &out,
                    )
            else:
                with nogil:
                    _epoch(
                        &plan.cfg, &state.solver, <double*>state.p, <double*>plan.x,
                        sparse, <double*>plan.y, <double*>plan.sw, row_ptr,
                        &spans[0, 0], n_batches, <double*>state.s1,
                        <double*>state.s2, <double*>mean, start,
                        <double*>plan.work, <double*>plan.c_rows, rng, table,
                        block, &out,
                    )
        except KeyboardInterrupt:
            out.status = K.INTERRUPTED
        finally:
            if lock is not None:
                lock.release()
    state.t = out.adam_t
    if average is not None:
        average.n_averaged, average.samples_seen = out.n_averaged, out.samples_seen
    return EpochResult(
        out.status, out.batch, out.loss_sum, out.weight_sum, out.seen, out.steps,
        out.clipped,
    )
