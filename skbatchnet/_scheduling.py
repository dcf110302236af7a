"""The batch size of each epoch of a call, and what follows from it.

``batch_size`` is a fixed size (an int, ``'auto'``, ``'full'``) or a
:class:`~skbatchnet.schedules.BatchSizeSchedule`. :class:`BatchSizes`
resolves the size of every epoch a call may run, checking them before any
training (up to :data:`CHECKED_AHEAD` epochs), so a schedule that gives an
impossible size costs no training. :class:`Epochs`
hands the epoch loop (:func:`skbatchnet._training.train_epochs`), one epoch
at a time, what that epoch's size decides: its batcher, its step, its runner
(the compiled loop's plan is made for one set of batch bounds, so a new size
gets a new runner; the weights, the optimizer's buffers and the weight
average are updated in place, so runners can take turns) and the learning
rate's factor (:func:`~skbatchnet.schedules.learning_rate_factor`). The loop
still leaves the compiled tier once per epoch, as with a fixed size.

A fixed size is the schedule of one size: one runner, one batcher, factor 1,
the same steps as before schedules existed.
"""

from numbers import Integral
from typing import NamedTuple

from .batching import resolve_batch_size
from .schedules import AdaptiveBatchSize, BatchSizeSchedule

__all__ = [
    "CHECKED_AHEAD",
    "BatchSizes",
    "Epoch",
    "Epochs",
    "adaptive_rule",
    "check_schedule_type",
    "is_adaptive",
]


def is_adaptive(batch_size):
    """Whether ``batch_size`` follows the tracked noise scale."""
    return (isinstance(batch_size, str) and batch_size == "adaptive") or isinstance(
        batch_size, AdaptiveBatchSize
    )


def adaptive_rule(batch_size):
    """The :class:`~skbatchnet.schedules.AdaptiveBatchSize` of an adaptive
    ``batch_size`` (``'adaptive'`` is the default one)."""
    return AdaptiveBatchSize() if isinstance(batch_size, str) else batch_size


def check_schedule_type(batch_size):
    """Refuse a plain callable as ``batch_size``, saying why and what works."""
    if isinstance(batch_size, type) and issubclass(batch_size, BatchSizeSchedule):
        raise TypeError(
            f"batch_size={batch_size.__name__} is a schedule class; pass an "
            f"instance of it, e.g. {batch_size.__name__}(...) with its settings."
        )
    if callable(batch_size) and not isinstance(batch_size, BatchSizeSchedule):
        raise TypeError(
            f"batch_size={batch_size!r} is a plain callable; a batch-size "
            "schedule must be a skbatchnet.schedules.BatchSizeSchedule. A lambda "
            "or a function defined inside another cannot be pickled, so neither "
            "could the fitted estimator, and functions never compare equal, "
            "which clone and GridSearchCV rely on. Use StepBatchSize or "
            "GeometricBatchSize from skbatchnet.schedules, or subclass "
            "BatchSizeSchedule at module level."
        )


def _scheduled_size(schedule, epoch, n_samples, held_out):
    """The batch size ``schedule`` gives epoch ``epoch``, checked, as an int."""
    size = schedule(epoch)
    said = f"batch_size={schedule!r} gives {size!r} for epoch {epoch}"
    if isinstance(size, str) and size == "full":
        return n_samples
    if not isinstance(size, Integral) or isinstance(size, bool):
        raise TypeError(
            f"{said}: a schedule must give a positive integer or 'full'. Make "
            "its __call__ return an int (e.g. int(round(size)))."
        )
    if size < 1:
        raise ValueError(
            f"{said}: a batch needs at least one row. Make the schedule give "
            "sizes >= 1."
        )
    if size > n_samples:
        rows = (
            "training rows, the early-stopping hold-out excluded"
            if held_out
            else ("training rows")
        )
        raise ValueError(
            f"{said}, more than the {n_samples} {rows} (n_samples={n_samples}). "
            f"Cap the schedule at {n_samples}, or give 'full' for the whole set."
        )
    return int(size)


# Epochs whose sizes are checked before training: every epoch of any run
# that could end (10^5 calls of a schedule take a fraction of a second);
# the sizes of later epochs are checked as they start.
CHECKED_AHEAD = 100_000


class BatchSizes:
    """The batch sizes of epochs ``first_epoch, ..., first_epoch + n_epochs - 1``.

    ``sizes[i]`` is the size of the call's epoch ``i``, an int. The sizes of
    the first :data:`CHECKED_AHEAD` epochs, and of epoch 0 (the reference
    of the rate rules, :attr:`first`), are checked when the object is made,
    before any training; ``n_epochs`` may be far larger (``max_iter`` is any
    int), so the sizes are computed, not stored.

    Parameters
    ----------
    batch_size : int, 'auto', 'full' or BatchSizeSchedule
    n_samples : int
        The rows the epochs train on.
    first_epoch, n_epochs : int
    held_out : bool, default=False
        Whether rows were held out for early stopping (said in the errors).
    history : callable, optional
        For an adaptive ``batch_size``: ``history()`` returns the last epoch
        trained, ``(batch_size, noise_scale)``, or None before the first;
        each epoch's size follows from the one before
        (:meth:`~skbatchnet.schedules.AdaptiveBatchSize.next_size`), the
        first of a fit is ``start`` (at most the rows allow).

    Raises
    ------
    TypeError, ValueError
        When the schedule gives a size that is not an int or ``'full'``,
        below 1, or above ``n_samples``.
    """

    def __init__(
        self, batch_size, n_samples, *, first_epoch, n_epochs, held_out=False,
        history=None,
    ):  # fmt: skip
        self.batch_size, self.n_samples = batch_size, n_samples
        self.first_epoch, self.n_epochs = first_epoch, n_epochs
        self.held_out = held_out
        self.adaptive = is_adaptive(batch_size)
        self.scheduled = isinstance(batch_size, BatchSizeSchedule)
        if self.adaptive:
            self.rule, self.history = adaptive_rule(batch_size), history
            # The rate rules' reference, and the first size of a fit.
            self.first = min(self.rule.start, self.rule.bounds(n_samples, n_samples)[1])
            self._smallest = min(self.rule.minimum, n_samples)
            return
        if not self.scheduled:
            self.first = resolve_batch_size(batch_size, n_samples)
            self._smallest = self.first
            return
        self.first = self._scheduled(0)
        ahead = [self[i] for i in range(min(n_epochs, CHECKED_AHEAD))]
        # Unknown sizes ahead could split the data: 1 always does.
        self._smallest = min(ahead) if n_epochs <= CHECKED_AHEAD else 1

    def _scheduled(self, epoch):
        return _scheduled_size(self.batch_size, epoch, self.n_samples, self.held_out)

    def __getitem__(self, index):
        if self.adaptive:
            last = self.history() if self.history is not None else None
            if last is None or last[0] is None:
                return self.first
            size, noise_scale = last
            n = self.n_samples
            return self.rule.next_size(min(size, n), noise_scale, n)
        if not self.scheduled:
            return self.first
        return self._scheduled(self.first_epoch + index)

    @property
    def order_size(self):
        """The size whose Minibatcher draws every epoch's order: the
        smallest of the call, so that the order is kept (not None) whenever
        any epoch splits the data."""
        return self._smallest


class Epoch(NamedTuple):
    """One epoch as its batch size decides it: the size, the batcher, the
    :class:`~skbatchnet._step.Step`, the runner, the rows' order (or the
    Poisson epoch) and the learning rate's factor."""

    batch_size: int
    batcher: object
    step: object
    runner: object
    order: object
    rate_factor: float


class Epochs:
    """The epochs of one call, each with what its batch size decides.

    Parameters
    ----------
    sizes : BatchSizes
        The batch size of each epoch.
    make : callable
        ``make(batch_size)`` returns that size's ``(batcher, step, runner)``.
    rate_factor : callable
        ``rate_factor(batch_size)``: the learning rate's factor.
    orders : iterator or None
        The rows' order of each epoch, one chain of permutations whatever
        the batch size (a Minibatcher's ``iter_orders``, of a size that
        splits the data whenever any epoch's does, so that its order is
        kept), so that each epoch visits the rows as a fixed-size run would
        at that epoch. None: each size's batcher draws its own epochs
        (Poisson batches, whose draws depend on the size).
    n_samples : int
    """

    def __init__(self, sizes, make, rate_factor, *, orders, n_samples):
        self.sizes, self.n_samples = sizes, n_samples
        self._make, self._rate_factor, self._orders = make, rate_factor, orders
        self._current = None

    @property
    def n_epochs(self):
        """The epochs of the call, at most (any int)."""
        return self.sizes.n_epochs

    def epoch(self, index):
        """Epoch ``index`` of the call; draws its order (call it once per epoch)."""
        size = self.sizes[index]
        if self._current is None or self._current[0] != size:
            batcher, step, runner = self._make(size)
            orders = self._orders
            if orders is None:
                orders = batcher.iter_orders(self.n_samples)
            factor = self._rate_factor(size)
            self._current = (size, batcher, step, runner, orders, factor)
        size, batcher, step, runner, orders, factor = self._current
        return Epoch(size, batcher, step, runner, next(orders), factor)
