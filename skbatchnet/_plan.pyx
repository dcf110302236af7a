# cython: language_level=3
"""The compiled tier's typed state, built and checked once per fit.

In the spirit of scikit-learn's ``WeightVector`` and ``SequentialDataset``:
what stays the same through a fit is checked once, here, and held as typed
objects whose C fields the epoch (_epoch.pyx) reads without the GIL:

- :class:`EpochPlan`: the rows (dense or CSR), targets and weights, the
  network's shape, the registry codes of its options, the chunking and
  thresholds, and the scratch memory, sized for the widest batch;
- :class:`OptimizerState`: the parameters and the solver's buffers;
- :class:`AverageState`: the running weight average;
- :class:`NoiseSource`: a numpy Generator the loop draws DP noise from.

Each epoch then takes only its order of rows (and, if they change, its
batches). What the loop assumes (shapes, dtypes, contiguity, index ranges,
codes) is checked here, or per epoch for the order, before any loop runs.
"""

import math

import numpy as np
import scipy.sparse

cimport cython
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.limits cimport LONG_MAX
from numpy.random cimport bitgen_t

cimport skbatchnet._choice as CH
cimport skbatchnet._noise as N

from ._codes import (
    BLOCK_ROWS,
    CHECK_STEPS,
    CHECK_WORK,
    ONE_THREAD_GEMM,
    ONE_THREAD_GEMV,
    SMALL_BATCH_ROWS,
    SPLIT_WORK,
    THREAD_WORK,
    TINY_PRODUCT,
    UPDATE_PIECE,
    ActivationCode,
    LossCode,
    ReductionCode,
    SolverCode,
)
from ._gaussian import TABLES, check_bit_generator
from ._validation import check_sparse_structure

__all__ = [
    "AverageState", "EpochPlan", "NoiseSource", "OptimizerState", "check_bounds"
]


cdef inline char* _address(object array):
    """Where a checked, contiguous array's data starts (NULL if empty)."""
    if array is None or array.size == 0:
        return NULL
    return <char*><size_t>array.__array_interface__["data"][0]


def _float_array(value, dtype, name, shape=None):
    """``value`` as a C-contiguous array of ``dtype``, of ``shape`` if given."""
    array = np.ascontiguousarray(value, dtype=dtype)
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}.")
    return array


def check_bounds(bounds, n_rows):
    """``bounds`` as an (n_batches, 2) intp array of ranges of ``n_rows`` rows.

    A range may be empty: a batch without rows takes no step (Poisson
    sampling draws such batches).
    """
    bounds = np.ascontiguousarray(bounds, dtype=np.intp).reshape(-1, 2)
    bad = (bounds[:, 0] < 0) | (bounds[:, 0] > bounds[:, 1]) | (bounds[:, 1] > n_rows)
    if bad.any():
        l = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"bounds[{l}] = {tuple(bounds[l])} is not a range (start <= stop) of "
            f"the epoch's order (length {n_rows})."
        )
    return bounds


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _first_outside(const Py_ssize_t[::1] rows, Py_ssize_t n):
    """The first position of ``rows`` that is not a row index below ``n``, or -1."""
    cdef Py_ssize_t i
    for i in range(rows.shape[0]):
        if not 0 <= rows[i] < n:
            return i
    return -1


def _code(kind, value, name):
    try:
        return int(kind(value))
    except ValueError:
        raise ValueError(
            f"{name} must be a code of {kind.__name__} "
            f"({', '.join(f'{m.name}={m.value}' for m in kind)}), got {value!r}."
        ) from None


cdef class EpochPlan:
    """What every epoch of one fit reads, checked once.

    Parameters
    ----------
    layer_units : sequence of int
        Units per layer, input first.
    X : ndarray of shape (n_samples, n_features) or CSR matrix
        Of the network's dtype (float32 or float64); copied only if it is not
        C-contiguous. A CSR matrix's structure is checked
        (``_validation.check_sparse_structure``); its arrays are copied to
        contiguous memory if they are strided, and its index arrays converted
        to intp, once, here.
    Y : ndarray of shape (n_samples, n_outputs)
    sample_weight : ndarray of shape (n_samples,) or None
    bounds : array of shape (n_batches, 2)
        ``(start, stop)`` of each batch in an epoch's order
        (``Minibatcher.bounds``), the last-batch policy already applied.
    activation, loss, reduction : int
        The registry entries' codes (``skbatchnet._codes``).
    alpha : float
        L2 penalty strength.
    total_weight : float
        ``S``, the training set's total sample weight.
    chunk_rows : int
        Rows processed at once; a batch with more rows is computed in chunks
        whose gradients are summed, as :meth:`Network.gradient` does.
    max_rows : int, optional
        The widest batch any epoch may bring; by default the widest of
        ``bounds``.
    max_norm : float, optional
        Clip each example's loss gradient to this norm (``_clipping.py``);
        None does not clip.
    expected_rows : float, optional
        Batches drawn by Poisson sampling (``batching.PoissonBatcher``), of
        this expected size ``q n``: the 'unbiased' reduction divides by the
        expected weight ``q S``, 'sum' takes its penalty at that expectation,
        and a batch without rows or weight still takes a step
        (``reduction.reduction_coefficients``). None: an epoch's batches.
    noise_std : float, optional
        The standard deviation of the Gaussian noise added to each step's
        reduced gradient before the optimizer's scale
        (``training.Step.noise_std``); 0 adds none. Needs ``expected_rows``
        and a reduction other than 'mean', and ``run_epoch`` a NoiseSource.
    track_noise : bool, default=False
        Estimate the gradient noise scale's two terms at every step of two
        rows or more (_noise_scale.pxd); not with clipping or noise.
    tiny_product, split_rows, gemv_limit, gemm_limit : int
    block_rows, split_work, update_piece, thread_work : int
    choose_threads : bool
    check_steps, check_work : int
        The thresholds of ``skbatchnet._codes`` (``TINY_PRODUCT``,
        ``SMALL_BATCH_ROWS``, ``ONE_THREAD_GEMV``, ``ONE_THREAD_GEMM``,
        ``BLOCK_ROWS``, ``SPLIT_WORK``, ``UPDATE_PIECE``, ``THREAD_WORK``,
        ``CHECK_STEPS``,
        ``CHECK_WORK``), which tests vary: products of at most
        ``tiny_product`` multiply-adds are the loop's own (0: none); batches
        of fewer than ``split_rows`` rows are cut into row blocks of at most
        ``block_rows`` rows (0: one block) and call BLAS in tiles of at most
        ``gemv_limit`` or ``gemm_limit`` multiply-adds, at least two for a
        product of ``split_work`` or more (_tiles.pxd); larger batches call
        it whole; the update runs in pieces of ``update_piece`` parameters;
        threads share only steps of ``thread_work`` multiply-adds or more,
        and with ``choose_threads`` only where they have been faster than
        one thread (_choice.pxd); the loop looks for Ctrl-C after ``check_steps`` steps or
        ``check_work`` multiply-adds and parameter updates, whichever comes
        first. None of them depends on the number of threads.
    """

    def __init__(
        self, layer_units, X, Y, sample_weight, bounds, *, activation, loss,
        reduction, alpha, total_weight, chunk_rows, max_rows=None, max_norm=None,
        expected_rows=None, noise_std=0.0, track_noise=False,
        tiny_product=TINY_PRODUCT, split_rows=SMALL_BATCH_ROWS,
        gemv_limit=ONE_THREAD_GEMV, gemm_limit=ONE_THREAD_GEMM,
        block_rows=BLOCK_ROWS, split_work=SPLIT_WORK, update_piece=UPDATE_PIECE,
        thread_work=THREAD_WORK, choose_threads=True, check_steps=CHECK_STEPS, check_work=CHECK_WORK,
    ):
        units = np.asarray([int(u) for u in layer_units], dtype=np.intp)
        if units.size < 2 or (units < 1).any():
            raise ValueError(
                f"layer_units needs at least two layers of positive width, got "
                f"{list(layer_units)!r}."
            )
        L = units.size - 1
        coef_offsets = np.concatenate([[0], np.cumsum(units[:-1] * units[1:])])
        unit_offsets = np.concatenate([[0], np.cumsum(units[1:])])
        self.sparse = scipy.sparse.issparse(X)
        self.dtype = np.dtype(X.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"X must be float32 or float64, got {self.dtype}.")
        n = self.n_samples = X.shape[0]
        if X.ndim != 2 or X.shape[1] != units[0]:
            raise ValueError(
                f"X of shape {X.shape} does not match layer_units {units.tolist()}: "
                f"it needs {units[0]} columns."
            )
        if self.sparse:
            if X.format != "csr":
                raise ValueError(f"A sparse X must be CSR, got {X.format.upper()}.")
            # The loop reads every index without bounds checks. The
            # estimators have checked X already; the plan does not rely on
            # its callers for that (one pass over the indices, once per fit).
            check_sparse_structure(X)
            # The loop indexes with intp; scipy keeps int32 indices where
            # they fit. Contiguous copies of strided arrays, never views.
            values = np.ascontiguousarray(X.data)
            indices = np.ascontiguousarray(X.indices, dtype=np.intp)
            indptr = np.ascontiguousarray(X.indptr, dtype=np.intp)
            self.csr.indices = <const Py_ssize_t*>_address(indices)
            self.csr.indptr = <const Py_ssize_t*>_address(indptr)
            rows = (values, indices, indptr)
        else:
            values = np.ascontiguousarray(X)
            rows = (values,)
        Y = _float_array(Y, self.dtype, "Y", (n, units[L]))
        if sample_weight is not None:
            sample_weight = _float_array(sample_weight, self.dtype, "sample_weight", (n,))
        if not total_weight > 0:
            raise ValueError(f"total_weight must be positive, got {total_weight}.")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be positive or None, got {max_norm}.")
        if expected_rows is not None and not 0 < expected_rows <= X.shape[0]:
            raise ValueError(
                f"expected_rows must be in (0, n_samples] or None, got {expected_rows}."
            )
        if not (noise_std >= 0 and math.isfinite(noise_std)):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}.")
        if noise_std > 0 and (expected_rows is None or reduction == ReductionCode.MEAN):
            raise ValueError(
                "Noise needs Poisson batches (expected_rows) and a reduction "
                "other than 'mean', whose divisor is the batch's own weight."
            )
        if track_noise and (max_norm is not None or noise_std > 0):
            raise ValueError(
                "track_noise needs unclipped, noiseless steps: its estimates "
                "read the step's unclipped data gradient."
            )
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}.")
        self.bounds = check_bounds(bounds, n)
        widest = int(np.max(np.diff(self.bounds, axis=1), initial=1))
        self.reach = int(np.max(self.bounds[:, 1], initial=0))
        self.stored_order = np.arange(n, dtype=np.intp)
        self.max_rows = widest if max_rows is None else int(max_rows)
        if self.max_rows < widest:
            raise ValueError(f"max_rows={max_rows} is below the widest batch, {widest}.")
        self.chunk_rows = chunk_rows = min(int(chunk_rows), self.max_rows)
        hidden = int(unit_offsets[L])
        gathered = (1 if self.sparse else chunk_rows) * int(units[0])
        n_params = int(coef_offsets[L]) + hidden
        work = np.empty(gathered + 2 * chunk_rows * hidden + n_params, self.dtype)
        c_rows = np.empty(self.max_rows, self.dtype)
        shape_arrays = (units, coef_offsets.astype(np.intp), unit_offsets.astype(np.intp))
        self._keep = (rows, Y, sample_weight, work, c_rows, shape_arrays)

        self.cfg.shape.n_layers = L
        self.cfg.shape.n_coefs = coef_offsets[L]
        self.cfg.shape.n_params = n_params
        self.cfg.shape.n_features = units[0]
        self.cfg.shape.n_outputs = units[L]
        self.cfg.shape.units = <const Py_ssize_t*>_address(shape_arrays[0])
        self.cfg.shape.coef_offsets = <const Py_ssize_t*>_address(shape_arrays[1])
        self.cfg.shape.unit_offsets = <const Py_ssize_t*>_address(shape_arrays[2])
        self.cfg.activation = _code(ActivationCode, activation, "activation")
        self.cfg.loss = _code(LossCode, loss, "loss")
        self.cfg.reduction = _code(ReductionCode, reduction, "reduction")
        self.cfg.chunk_rows = chunk_rows
        self.cfg.alpha = alpha
        self.cfg.total_weight = total_weight
        self.cfg.weight_per_row = total_weight / n if n else 0.0
        self.cfg.max_norm = 0.0 if max_norm is None else max_norm
        self.cfg.expected_rows = 0.0 if expected_rows is None else expected_rows
        self.cfg.noise_std = noise_std
        self.cfg.track_noise = bool(track_noise)
        self.cfg.check_steps = max(1, check_steps)
        self.cfg.check_work = max(1, check_work)
        self.cfg.tiny_product = tiny_product
        self.cfg.split_rows = split_rows
        self.cfg.gemv_limit = gemv_limit
        self.cfg.gemm_limit = gemm_limit
        self.cfg.block_rows = max(0, block_rows)
        self.cfg.split_work = max(0, split_work)
        self.cfg.update_piece = max(1, update_piece)
        self.cfg.thread_work = thread_work
        self.cfg.choose_threads = bool(choose_threads)
        CH.start(&self.choice)
        self.x = _address(values)
        self.y = _address(Y)
        self.sw = _address(sample_weight)
        self.work = _address(work)
        self.c_rows = _address(c_rows)

    @property
    def thread_choice(self):
        """Where the choice between one thread and the team stands
        (_choice.pxd): the mode in use (0: one thread, 1: the team), the
        seconds per unit of work each has shown (0: not yet measured), and
        the steps until the other is tried again."""
        return {
            "mode": self.choice.mode,
            "one_thread": self.choice.rate[0],
            "team": self.choice.rate[1],
            "wait": self.choice.wait,
        }

    @property
    def thresholds(self):
        """The product and Ctrl-C thresholds the loop follows, by keyword."""
        return {
            "tiny_product": self.cfg.tiny_product,
            "split_rows": self.cfg.split_rows,
            "gemv_limit": self.cfg.gemv_limit,
            "gemm_limit": self.cfg.gemm_limit,
            "block_rows": self.cfg.block_rows,
            "split_work": self.cfg.split_work,
            "update_piece": self.cfg.update_piece,
            "thread_work": int(self.cfg.thread_work),
            "choose_threads": bool(self.cfg.choose_threads),
            "check_steps": self.cfg.check_steps,
            "check_work": int(self.cfg.check_work),
        }

    def epoch_rows(self, order=None, bounds=None):
        """An epoch's order of rows and its batches, checked for the loop.

        ``order`` (None: the rows as stored) must hold row indices; ``bounds``
        (None: the plan's) ranges of it, none wider than ``max_rows``.

        Returns
        -------
        rows : ndarray of intp
        bounds : ndarray of intp, shape (n_batches, 2)
        """
        if order is None:
            rows = self.stored_order
        else:
            rows = np.ascontiguousarray(order, dtype=np.intp)
            i = _first_outside(rows, self.n_samples)
            if i >= 0:
                raise ValueError(f"order[{i}] = {rows[i]} is not a row of X.")
        if bounds is None:
            if self.reach > rows.shape[0]:
                raise ValueError(
                    f"order has {rows.shape[0]} rows; the batches need {self.reach}."
                )
            return rows, self.bounds
        bounds = check_bounds(bounds, rows.shape[0])
        widest = int(np.max(np.diff(bounds, axis=1), initial=0))
        if widest > self.max_rows:
            raise ValueError(
                f"A batch of {widest} rows is wider than the plan's max_rows, "
                f"{self.max_rows}."
            )
        return rows, bounds

    def check_noise(self, noise):
        """Refuse a NoiseSource for a plan without noise, its absence for one
        with noise, and one with fewer draws than a step takes."""
        if (noise is not None) != (self.cfg.noise_std > 0):
            raise ValueError(
                "A NoiseSource goes with a plan of noise_std > 0, and only with one."
            )
        if noise is not None and noise.size < self.cfg.shape.n_params:
            raise ValueError(
                f"The NoiseSource holds {noise.size} draws; a step takes "
                f"{self.cfg.shape.n_params}."
            )

    def arrays(self):
        """The arrays the loop reads, as checked and converted.

        ``X`` (a CSR matrix's values), ``Y``, ``sample_weight`` (or None) and
        the ``workspace`` (gathered rows, activations, deltas, gradient).
        """
        rows, Y, sample_weight, work = self._keep[:4]
        return {"X": rows[0], "Y": Y, "sample_weight": sample_weight, "workspace": work}


def _state_vector(array, dtype, size, name):
    if array is None:
        raise ValueError(f"The optimizer state needs {name}.")
    if not (
        isinstance(array, np.ndarray) and array.dtype == dtype
        and array.shape == (size,) and array.flags.c_contiguous
        and array.flags.writeable
    ):
        raise ValueError(
            f"{name} must be a writeable C-contiguous {np.dtype(dtype)} vector of "
            f"{size} values, like the parameters."
        )
    return array


cdef class OptimizerState:
    """The parameters and a solver's buffers, updated in place by the loop.

    Parameters
    ----------
    solver : int
        A ``SolverCode``.
    params : ndarray of shape (n_parameters,)
        All weights, then all biases, as :attr:`Network.parameters`.
    learning_rate : float
        SGD's current rate; Adam's ``learning_rate_init``. Settable between
        epochs (SGD's schedules change it).
    velocity : ndarray, optional
        SGD's state as ``_optimizers.SGD`` keeps it (``momentum * v`` with
        Nesterov momentum).
    momentum : float
    nesterov : bool
    adam_m, adam_u : ndarray, optional
        Adam's first moment and second moment divided by
        ``k = (1 - beta_2) / (1 - beta_1)**2``, as ``_optimizers.Adam`` keeps
        them.
    t : int
        Adam's steps so far; the loop advances it.
    beta_1, beta_2, epsilon : float
    """

    def __init__(
        self, solver, params, *, learning_rate, velocity=None, momentum=0.0,
        nesterov=False, adam_m=None, adam_u=None, t=0, beta_1=0.9,
        beta_2=0.999, epsilon=1e-8,
    ):
        self.solver.code = _code(SolverCode, solver, "solver")
        self.dtype = params.dtype
        size = params.shape[0]
        self.params = _state_vector(params, self.dtype, size, "params")
        if self.solver.code == SolverCode.SGD:
            buffers = (_state_vector(velocity, self.dtype, size, "velocity"), None)
        elif self.solver.code == SolverCode.ADAM:
            buffers = (
                _state_vector(adam_m, self.dtype, size, "adam_m"),
                _state_vector(adam_u, self.dtype, size, "adam_u"),
            )
        self._keep = buffers
        self.p = _address(params)
        self.s1 = _address(buffers[0])
        self.s2 = _address(buffers[1])
        self.solver.nesterov = nesterov
        self.solver.learning_rate = learning_rate
        self.solver.momentum = momentum
        self.solver.beta_1 = beta_1
        self.solver.beta_2 = beta_2
        self.solver.epsilon = epsilon
        self.t = t

    @property
    def learning_rate(self):
        return self.solver.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.solver.learning_rate = value


cdef class AverageState:
    """The running weight average (``_averaging.WeightAverage``), in place.

    Parameters
    ----------
    mean : ndarray of shape (n_parameters,)
    n_averaged, samples_seen, start : int
        ``WeightAverage``'s counters and start; the loop advances the
        counters. A ``start`` beyond the C ``long`` range is held at its
        maximum: ``samples_seen`` is a ``long`` too, so no count of samples
        the loop can reach is treated differently (the mean never starts).
    """

    def __init__(self, mean, n_averaged=0, samples_seen=0, start=1):
        self.mean = _state_vector(mean, mean.dtype, mean.shape[0], "mean")
        self.m = _address(mean)
        self.n_averaged, self.samples_seen = n_averaged, samples_seen
        # ``average`` is any positive int (scikit-learn's SGD takes any); the
        # loop compares it with a long.
        self.start = min(int(start), LONG_MAX)



cdef class NoiseSource:
    """A numpy Generator opened for the loop: its ``bitgen_t``, its lock, the
    ziggurat's tables (``_gaussian.TABLES``) and scratch for ``size`` draws.

    Parameters
    ----------
    generator : numpy.random.Generator
        Of a PCG64 (numpy's default), PCG64DXSM, SFC64 or Philox; advanced in
        place by every draw, from the loop or from Python.
    size : int
        The most draws a step takes: the network's parameter count.
    """

    def __init__(self, generator, size):
        if not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"The noise needs a numpy Generator, got {type(generator).__name__}."
            )
        check_bit_generator(generator.bit_generator)
        self.bit_generator = generator.bit_generator
        self.rng = <bitgen_t*>PyCapsule_GetPointer(
            self.bit_generator.capsule, "BitGenerator"
        )
        self.size = int(size)
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {size}.")
        w = np.ascontiguousarray(TABLES.w, dtype=np.float64)
        k = np.ascontiguousarray(TABLES.k, dtype=np.uint64)
        y = np.ascontiguousarray(TABLES.y, dtype=np.float64)
        block = np.empty(self.size, np.uint64)
        self._keep = (w, k, y, block)
        self.table.w = <const double*>_address(w)
        self.table.k = <const uint64_t*>_address(k)
        self.table.y = <const double*>_address(y)
        self.table.r = TABLES.r
        self.block = <uint64_t*>_address(block)

    def add_to(self, grad, double scale):
        """``grad += scale * z`` with ``z`` the sampler's draws
        (``_gaussian.standard_normal``), drawn by the loop's kernel (for tests).
        """
        cdef double[::1] g64
        cdef float[::1] g32
        if not 0 < grad.shape[0] <= self.size:
            raise ValueError(f"grad needs 1 to {self.size} entries, got {grad.shape}.")
        with self.bit_generator.lock:
            if grad.dtype == np.float32:
                g32 = grad
                with nogil:
                    N.add_noise(
                        self.rng, &self.table, self.block, &g32[0], g32.shape[0], scale
                    )
            else:
                g64 = grad
                with nogil:
                    N.add_noise(
                        self.rng, &self.table, self.block, &g64[0], g64.shape[0], scale
                    )
