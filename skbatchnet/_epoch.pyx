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
the products in ``_products.pxd`` and, cut into tiles, ``_tiles.pxd``; a
chunk's forward and backward pass, on the loop's threads, in ``_pass.pxd``
(which leaves a one-row batch's weight gradient to the update, which forms
it as it reads it, except under noise, which the whole gradient receives);
the optimizers' passes and the step over the network in ``_updates.pxd``;
the clipping in ``_clip_kernels.pxd``; the DP noise in ``_noise.pxd``; the
noise scale's estimates in ``_noise_scale.pxd``; the choice between one
thread and the team in ``_choice.pxd``. Each step's results are the same
bits on any number of threads.
"""

from collections import namedtuple

import numpy as np

from cython cimport floating
from libc.math cimport isfinite
from libc.string cimport memset

cimport skbatchnet._choice as CH
cimport skbatchnet._kernels as K
cimport skbatchnet._noise as N
cimport skbatchnet._noise_scale as G
cimport skbatchnet._pass as S
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

# OpenMP's thread count where the build has OpenMP (setup.py), else one.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int skbatchnet_openmp(void) { return 1; }
    static int skbatchnet_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int skbatchnet_openmp(void) { return 0; }
    static int skbatchnet_max_threads(void) { return 1; }
    #endif
    """
    int skbatchnet_openmp() noexcept nogil
    int skbatchnet_max_threads() noexcept nogil

__all__ = [
    "EpochResult", "cpu_has_avx2", "openmp_max_threads", "run_epoch", "with_openmp"
]


def with_openmp():
    """Whether this module was built with OpenMP (its loop can use threads)."""
    return bool(skbatchnet_openmp())


def openmp_max_threads():
    """``omp_get_max_threads()`` in the calling thread (1 without OpenMP): it
    reads OMP_NUM_THREADS and the limit threadpoolctl sets for this thread."""
    return skbatchnet_max_threads()


def cpu_has_avx2():
    """Whether this CPU, and the operating system, can run AVX2 instructions.

    Asked before importing ``skbatchnet._epoch_avx2``, which would stop the
    process on a CPU without them.
    """
    return bool(skbatchnet_cpu_has_avx2())


EpochResult = namedtuple(
    "EpochResult",
    [
        "status", "batch", "loss_sum", "weight_sum", "seen", "steps", "clipped",
        "noise_g2", "noise_trace", "noise_steps",
    ],
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
noise_g2, noise_trace, noise_steps : float, float, int
    With the plan's ``track_noise``: the sums of the estimates of |G|^2 and
    tr(Sigma) over the steps of two rows or more, and their count
    (_noise_scale.pxd); zeros otherwise.
"""


cdef int _epoch(
    const Config* cfg, const Solver* solver, floating* params,
    const floating* X, const Sparse* sparse, const floating* Y,
    const floating* sw, const Py_ssize_t* order, const Py_ssize_t* bounds,
    Py_ssize_t n_batches, floating* state1, floating* state2, floating* mean,
    long average_start, floating* work, floating* c_rows, bitgen_t* rng,
    const N.Ziggurat* noise_table, uint64_t* noise_block, double* parts,
    floating* scratch, int n_threads, CH.Choice* choice, Counters* out
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
    # Per row block of a chunk (loss, clipped rows), per piece of the update.
    cdef double* row_parts = parts + cfg.chunk_rows
    cdef double* norm_parts = row_parts + cfg.chunk_rows
    cdef double squares
    cdef bint one_row, average_now
    cdef int threads, mode
    cdef double step_work, began = 0
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
        loss_sum = squares = 0
        if n == 0:  # a step of the penalty (and noise) alone
            memset(grad, 0, cfg.shape.n_params * sizeof(floating))
        one_row = n == 1 and rng == NULL
        # Threads share a step worth sharing (_codes.THREAD_WORK) when they
        # have been the faster (_choice.pxd); the same bits either way.
        step_work = S.chunk_work(cfg, n, not one_row)
        mode = -1
        if n_threads > 1 and step_work >= cfg.thread_work:
            mode = CH.pick(choice) if cfg.choose_threads else 1
            began = CH.wtime()
        threads = n_threads if mode == 1 else 1
        for chunk in range(n_chunks):
            lo = chunk * n // n_chunks
            hi = (chunk + 1) * n // n_chunks
            loss_sum += S.chunk_pass(
                cfg, params, X, sparse, Y, sw, order + start + lo, hi - lo,
                c_ptr + lo if c_ptr != NULL else NULL, <floating>c_const,
                Xb, acts, deltas, grad, chunk == 0, not one_row, parts, row_parts,
                scratch, threads, &out.clipped, &squares,
            )
            if worked(&watch, S.chunk_work(cfg, hi - lo, not one_row)):
                return -1  # the handler's exception, set: Cython raises it

        loss = loss_sum / weight if weight != 0 else 0.0
        if cfg.alpha != 0:
            loss += 0.5 * cfg.alpha * norm / cfg.total_weight
        if not isfinite(loss):
            out.status = K.NONFINITE_LOSS
            out.batch = b + 1
            return 0
        if cfg.track_noise:
            G.track_step(cfg, out, grad, squares, n, scale)
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
        average_now = averaging and out.samples_seen >= average_start
        out.n_averaged += average_now
        # ||W||^2 at the weights the next step starts from.
        if one_row:
            norm = U.network_update(
                &cfg.shape, solver, cfg.alpha != 0, params, grad, decay, state1,
                state2, out.adam_t,
                Xb if sparse != NULL
                else <floating*>X + order[start] * cfg.shape.n_features,
                acts, deltas,
            )
            if average_now:
                U.average_pass(
                    mean, params, cfg.shape.n_params, <floating>out.n_averaged)
        else:
            norm = U.update_on_threads(
                &cfg.shape, solver, cfg.alpha != 0, params, grad, decay, state1,
                state2, out.adam_t, mean if average_now else NULL,
                <floating>out.n_averaged, norm_parts, cfg.update_piece, threads,
            )
        if mode >= 0:
            CH.record(choice, mode, CH.wtime() - began, step_work)
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


cdef inline char* np_data(object array):
    return <char*><size_t>array.__array_interface__["data"][0]


def run_epoch(
    EpochPlan plan not None, OptimizerState state not None, AverageState average,
    order=None, bounds=None, NoiseSource noise=None, int n_threads=1,
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
    n_threads : int, default=1
        Threads that share each batch's tiles and the update (_pass.pxd);
        the results are the same bits for any number. Without OpenMP in the
        build, one.

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
    cdef Config* cfg
    plan.check_noise(noise)
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}.")
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
    cfg = &plan.cfg
    # Sums per row block and per piece of the update (added in order), and
    # each thread's zeros for the norms of CSR rows (clipping, tracking).
    parts = np.empty(
        2 * cfg.chunk_rows + cfg.shape.n_coefs // cfg.update_piece + 2, np.float64)
    norms = plan.sparse and (cfg.max_norm > 0 or cfg.track_noise)
    scratch = np.zeros(n_threads * cfg.shape.n_features if norms else 1, plan.dtype)
    cdef double* part_sums = <double*>np_data(parts)
    cdef char* scratch_ptr = np_data(scratch)
    if rows.shape[0]:  # Poisson batches may all be empty
        row_ptr = &rows[0]
    lock = None
    if noise is not None:
        rng, lock = noise.rng, noise.bit_generator.lock
        table, block = &noise.table, noise.block
    out.status = K.OK
    out.batch = out.seen = out.steps = out.clipped = out.noise_steps = 0
    out.loss_sum = out.weight_sum = out.noise_g2 = out.noise_trace = 0
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
                        rng, table, block, part_sums, <float*>scratch_ptr,
                        n_threads, &plan.choice, &out,
                    )
            else:
                with nogil:
                    _epoch(
                        &plan.cfg, &state.solver, <double*>state.p, <double*>plan.x,
                        sparse, <double*>plan.y, <double*>plan.sw, row_ptr,
                        &spans[0, 0], n_batches, <double*>state.s1,
                        <double*>state.s2, <double*>mean, start,
                        <double*>plan.work, <double*>plan.c_rows, rng, table,
                        block, part_sums, <double*>scratch_ptr, n_threads,
                        &plan.choice, &out,
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
        out.clipped, out.noise_g2, out.noise_trace, out.noise_steps,
    )
