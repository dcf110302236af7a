"""The compiled epoch as a runner of the epoch loop, beside the numpy one.

:class:`CompiledEpochs` runs whole epochs of minibatch steps in the compiled
loop (``_epoch.pyx``), with the GIL released, on dense or CSR rows of the
network's float type. It answers as :class:`skbatchnet._training.NumpyEpochs`
does (``run(order, optimizer, averager)`` returns the epoch's
:class:`~skbatchnet._outcome.EpochSums` or raises), and it reads and updates
in place the state the numpy path keeps (the network's parameter vector, the
optimizer's buffers, the weight average), so the two can take turns. The
typed state the loop reads is built once, when the runner is made.
"""

import numpy as np
import scipy.sparse as sp

from . import _extension
from ._activations import ACTIVATIONS
from ._codes import Status
from ._losses import LOSSES
from ._outcome import Diverged, EpochSums
from ._threads import loop_threads, splits_products
from ._warn import warn
from .batching import PoissonEpoch
from .reduction import REDUCTIONS

__all__ = ["CompiledEpochs", "missing_kernels"]

_FLOATS = (np.float32, np.float64)
_warned = set()


def missing_kernels(network, optimizer, reduction):
    """The options of a fit that have no compiled code, as ``name=value``.

    An entry added to a registry without a code (``code=None``) trains on
    the numpy path.
    """
    entries = [
        ("activation", network.activation, ACTIVATIONS[network.activation].code),
        ("loss", network.loss, LOSSES[network.loss].code),
        ("gradient_reduction", reduction, REDUCTIONS[reduction].code),
        ("solver", type(optimizer).__name__, type(optimizer).code),
    ]
    return [f"{kind}={name!r}" for kind, name, code in entries if code is None]


class CompiledEpochs:
    """Epochs of one fit, run by the compiled loop.

    Parameters
    ----------
    network : Network
    data : TrainingData
        Dense or CSR rows of the network's dtype (see :meth:`supports`).
    batcher : Minibatcher
        Its ``bounds`` are every epoch's batches.
    step : Step
        ``alpha``, the reduction, clipping, Poisson batches and noise.
    thresholds : dict, optional
        Overrides of the plan's product thresholds (``EpochPlan``'s keyword
        arguments), for tests.
    module : tuple, optional
        ``(epoch, plan)`` extension modules, for tests; by default the ones
        :mod:`skbatchnet._extension` picks.
    noise : numpy.random.Generator, optional
        The source of the DP noise, required when ``step`` has noise; the loop
        draws from it in place.
    n_threads : int, optional
        The loop's threads, for tests; by default as :mod:`skbatchnet._threads`
        counts them at each epoch.
    """

    def __init__(
        self,
        network,
        data,
        batcher,
        step,
        *,
        thresholds=None,
        module=None,
        noise=None,
        n_threads=None,
    ):
        self.epoch, plan = module or _extension.epoch_module()
        self.network = network
        # supports() admitted dense or CSR rows of the network's dtype, which
        # the plan reads as they are; it caps the chunk at the widest batch.
        self.plan = plan.EpochPlan(
            network.layer_units,
            data.X,
            data.Y,
            data.sample_weight,
            batcher.bounds(data.n_samples),
            activation=ACTIVATIONS[network.activation].code,
            loss=LOSSES[network.loss].code,
            reduction=REDUCTIONS[step.reduction].code,
            alpha=float(step.alpha),
            total_weight=float(data.total),
            max_norm=step.max_gradient_norm,
            expected_rows=step.expected_rows,
            noise_std=step.noise_std(data.row_weight),
            track_noise=step.track_noise,
            chunk_rows=network.chunk_rows(),
            **{**self.default_thresholds(), **(thresholds or {})},
        )
        self._split = self.plan.thresholds["split_rows"] > 0
        epoch = self.epoch
        self._openmp = epoch.openmp_max_threads if epoch.with_openmp() else None
        self._n_threads = n_threads
        self._plan_module = plan
        self._state = self._average = None
        self.noise = None
        if step.noise_multiplier:
            self.noise = plan.NoiseSource(noise, network.parameters.size)

    @staticmethod
    def default_thresholds():
        """Where scipy's BLAS is OpenBLAS, every batch is cut into tiles that
        the loop's threads share (_tiles.pxd); with another BLAS, products
        go to it whole, on one thread of the loop (_threads.py)."""
        return {"split_rows": np.iinfo(np.intp).max if splits_products() else 0}

    @staticmethod
    def supports(network, X, optimizer, step):
        """Whether the compiled loop can train ``network`` on ``X``.

        Warns once per process when the extension is not built, and once per
        combination of options when a registry entry has no compiled code.
        """
        dense_or_csr = isinstance(X, np.ndarray) or (
            sp.issparse(X) and X.format == "csr"
        )
        if not (
            dense_or_csr
            and X.dtype == network.dtype
            and network.dtype.type in _FLOATS
            and optimizer.stochastic
        ):
            return False
        missing = missing_kernels(network, optimizer, step.reduction)
        if missing:
            key = tuple(missing)
            if key not in _warned:
                _warned.add(key)
                warn(
                    f"{', '.join(missing)} has no compiled kernel; training runs "
                    "on the numpy path. Give its registry entry a code and a "
                    "kernel in _kernels.pxd to train it in the compiled loop.",
                    RuntimeWarning,
                )
            return False
        if _extension.epoch_module() is None:
            _extension.warn_not_built()
            return False
        return True

    def _optimizer_state(self, optimizer):
        """The loop's view of ``optimizer``, made once per optimizer object."""
        settings = optimizer.loop_state()
        if self._state is None or self._state[0] is not optimizer:
            state = self._plan_module.OptimizerState(
                type(optimizer).code, self.network.parameters, **settings
            )
            self._state = (optimizer, state)
        state = self._state[1]
        # SGD's schedules change its rate between epochs.
        state.learning_rate = settings["learning_rate"]
        state.t = settings.get("t", 0)
        return state

    def _average_state(self, averager):
        if averager is None:
            return None
        if self._average is None or self._average[0] is not averager:
            start = averager.start
            self._average = (
                averager,
                self._plan_module.AverageState(averager.mean, start=start),
            )
        average = self._average[1]
        average.n_averaged = averager.n_averaged
        average.samples_seen = averager.samples_seen
        return average

    def run(self, order, optimizer, averager):
        """One epoch visiting the rows in ``order`` (None: stored order), or
        the batches of a :class:`~skbatchnet.batching.PoissonEpoch`.

        Returns
        -------
        sums : EpochSums
            The optimizer's and the average's counters are brought up to date.

        Raises
        ------
        Diverged
            At a non-finite loss or weights.
        KeyboardInterrupt
            When Ctrl-C reached the loop; the parameters are mid-epoch.
        """
        average = self._average_state(averager)
        bounds = None
        if isinstance(order, PoissonEpoch):  # batches of their own sizes
            order, bounds = order
        state = self._optimizer_state(optimizer)
        with loop_threads(self._openmp, self._split) as n_threads:
            result = self.epoch.run_epoch(
                self.plan,
                state,
                average,
                order,
                bounds,
                self.noise,
                self._n_threads or n_threads,
            )
        optimizer.advance(result.steps)
        if averager is not None:
            averager.n_averaged = average.n_averaged
            averager.samples_seen = average.samples_seen
        if result.status == Status.INTERRUPTED:
            raise KeyboardInterrupt
        if result.status == Status.NONFINITE_LOSS:
            raise Diverged("loss", result.batch, result.steps, result.seen)
        if result.status == Status.NONFINITE_WEIGHTS:
            raise Diverged("weights", result.batch, result.steps, result.seen)
        return EpochSums(
            result.loss_sum,
            result.weight_sum,
            result.seen,
            result.steps,
            result.clipped,
            result.noise_g2,
            result.noise_trace,
            result.noise_steps,
        )
