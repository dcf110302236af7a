"""The compiled epoch plugged into training: the numpy core's state in, an epoch out.

:class:`CompiledEpochs` runs whole epochs of minibatch steps in
:mod:`skbatchnet._loop`, with the GIL released, on dense or CSR rows of the
network's float type. It reads and updates in place the same state the numpy
path keeps (the network's parameter vector, the optimizer's buffers, the
weight average), so the two paths can take turns; the numpy path
(:func:`skbatchnet._training.run_epoch`) stays the specification, and the two
are tested equal to rounding.
"""

import math

import numpy as np
import scipy.sparse as sp

from ._optimizers import SGD, Adam

try:
    from . import _loop
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "skbatchnet's compiled training loop (skbatchnet._loop) is not built. "
        "Install skbatchnet with pip, which compiles it and needs a C compiler: "
        "in a source checkout, `pip install -e .` builds it in place, where "
        "Python run from the checkout finds it (`pip install .` builds it only "
        "into site-packages)."
    ) from exc

if _loop.cpu_has_avx2():
    # The same loop built for AVX2, where the build made one (setup.py); it
    # computes the same bits, with vectors twice as wide.
    try:
        from . import _loop_avx2 as _loop
    except ImportError:  # pragma: no cover - a build without the twin
        pass

__all__ = [
    "INTERRUPTED",
    "NONFINITE_LOSS",
    "NONFINITE_WEIGHTS",
    "CompiledEpochs",
    "one_thread_product",
    "squared_norm",
]

# The numpy path's products of small batches (see _workspace.dense_product).
one_thread_product = _loop.one_thread_product


def squared_norm(w):
    """``sum(w ** 2)`` of a 1-D array, without waking BLAS threads.

    OpenBLAS runs a dot product of more than 10000 entries on all its
    threads, woken at every step of a small batch; the compiled loop's sum
    runs on the calling thread. Types BLAS lacks take np.dot, which does not
    call BLAS for them.
    """
    if w.dtype.type in _FLOATS:
        return _loop.squared_norm(np.ascontiguousarray(w))
    return float(np.dot(w, w))


# The statuses of an epoch that did not finish normally.
INTERRUPTED = _loop.INTERRUPTED
NONFINITE_LOSS = _loop.NONFINITE_LOSS
NONFINITE_WEIGHTS = _loop.NONFINITE_WEIGHTS

_FLOATS = (np.float32, np.float64)


class CompiledEpochs:
    """Epochs of one fit, run by the compiled loop.

    Parameters
    ----------
    network : Network
    X, Y, sample_weight : ndarray
        The training rows, their 2-D targets and weights (or None), dense, in
        the network's dtype.
    bounds : list of (int, int)
        ``(start, stop)`` of each batch in an epoch's order
        (``Minibatcher.bounds``).
    rules : Rules
        ``alpha`` and the reduction.
    total_weight : float
        ``S`` of the training set.
    """

    def __init__(self, network, X, Y, sample_weight, *, bounds, rules, total_weight):
        dtype = network.dtype
        self.network = network
        self.X = _loop_input(X, dtype)
        self.Y = np.ascontiguousarray(Y, dtype=dtype)
        self.sample_weight = (
            None
            if sample_weight is None
            else np.ascontiguousarray(sample_weight, dtype=dtype)
        )
        self.bounds = np.asarray(bounds, dtype=np.intp).reshape(-1, 2)
        self.stored_order = np.arange(X.shape[0], dtype=np.intp)
        widest = int((self.bounds[:, 1] - self.bounds[:, 0]).max())
        self.chunk_rows = max(1, min(widest, network.chunk_rows()))
        self.work = _loop.epoch_workspace(
            network.layer_units, self.chunk_rows, dtype, sparse=sp.issparse(X)
        )
        self.settings = dict(
            activation=_loop.ACTIVATION_CODES[network.activation],
            loss=_loop.LOSS_CODES[network.loss],
            reduction=_loop.REDUCTION_CODES[rules.reduction],
            alpha=float(rules.alpha),
            total_weight=float(total_weight),
            chunk_rows=self.chunk_rows,
        )

    @staticmethod
    def supports(network, X, optimizer):
        """Whether the compiled loop can train ``network`` on ``X``."""
        return (
            (isinstance(X, np.ndarray) or (sp.issparse(X) and X.format == "csr"))
            and X.dtype == network.dtype
            and network.dtype.type in _FLOATS
            and type(optimizer) in (SGD, Adam)
        )

    def run(self, order, optimizer, averager):
        """One epoch visiting the rows in ``order`` (None: stored order).

        Returns
        -------
        result : skbatchnet._loop.EpochResult
            The loop's status, loss sums and counters; the optimizer's and
            the average's counters are already brought up to date.
        """
        state = _optimizer_state(optimizer)
        if averager is not None:
            state.update(
                average_mean=averager.mean,
                n_averaged=averager.n_averaged,
                samples_seen=averager.samples_seen,
                average_start=averager.start,
            )
        result = _loop.run_epoch(
            self.network.parameters,
            self.network.layer_units,
            self.X,
            self.Y,
            self.sample_weight,
            self.stored_order if order is None else order.astype(np.intp, copy=False),
            self.bounds,
            self.work,
            **self.settings,
            **state,
        )
        if isinstance(optimizer, Adam) and result.steps:
            optimizer.t += result.steps
            b1, b2, t = optimizer.beta_1, optimizer.beta_2, optimizer.t
            optimizer.learning_rate = (
                optimizer.learning_rate_init * math.sqrt(1 - b2**t) / (1 - b1**t)
            )
        if averager is not None:
            averager.n_averaged = result.n_averaged
            averager.samples_seen = result.samples_seen
        return result


def _optimizer_state(optimizer):
    """The loop's arguments for the optimizer's state (updated in place)."""
    if isinstance(optimizer, Adam):
        return dict(
            solver=_loop.SOLVER_CODES["adam"],
            learning_rate=optimizer.learning_rate_init,
            adam_m=optimizer.ms[0],
            adam_u=optimizer.us[0],
            adam_t=optimizer.t,
            beta_1=optimizer.beta_1,
            beta_2=optimizer.beta_2,
            epsilon=optimizer.epsilon,
        )
    return dict(
        solver=_loop.SOLVER_CODES["sgd"],
        learning_rate=optimizer.learning_rate,
        velocity=optimizer.velocities[0],
        momentum=optimizer.momentum,
        nesterov=optimizer.nesterov,
    )


def _loop_input(X, dtype):
    """X as the loop reads it: C-contiguous, or CSR."""
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=dtype, copy=False)
    return np.ascontiguousarray(X, dtype=dtype)
