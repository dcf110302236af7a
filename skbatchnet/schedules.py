"""Batch-size schedules: the batch grows while training, and the rate follows.

A schedule is passed as ``batch_size``: it maps the epoch number to the
number of rows per batch of that epoch. Growing the batch during training
trades steps for examples: early on, when the gradient noise scale is small,
small batches make progress cheaply; later, larger batches cut the noise
that a decaying learning rate would otherwise have to cut (Smith et al.
2017, "Don't decay the learning rate, increase the batch size").

**Epochs.** The epoch number is ``n_iter_`` when the epoch starts: ``fit``
counts from 0 (a ``warm_start`` fit too, as ``n_iter_`` does), and each
``partial_fit`` call is one epoch that continues from ``n_iter_``.

**The rate rule** (:func:`learning_rate_factor`): with ``r = b / b0``, the
epoch's batch size ``b`` over the schedule's batch size ``b0`` at epoch 0,
the learning rate of the epoch is the rate the ``learning_rate`` setting
gives, times ``r ** (p - c)``: ``p = 1`` under ``'linear'``, ``1/2`` under
``'sqrt'``, and ``c = 1`` for SGD under ``gradient_reduction='sum'``, whose
step already grows with the batch's weight, else 0. Adam divides the
gradient's scale out, so ``c = 0`` under any reduction.

Examples
--------
>>> from skbatchnet.schedules import GeometricBatchSize, StepBatchSize
>>> schedule = StepBatchSize({0: 8, 10: 32, 20: "full"})
>>> schedule(0), schedule(9), schedule(10), schedule(25)
(8, 8, 32, 'full')
>>> doubling = GeometricBatchSize(8, 64, every=5)
>>> [doubling(epoch) for epoch in (0, 4, 5, 10, 15, 40)]
[8, 8, 16, 32, 64, 64]
>>> learning_rate_factor("sqrt", 32, 8, solver="adam", gradient_reduction="mean")
2.0
"""

import math
from abc import ABCMeta, abstractmethod
from bisect import bisect_right
from numbers import Integral

__all__ = [
    "RATE_RULES",
    "AdaptiveBatchSize",
    "BatchSizeSchedule",
    "GeometricBatchSize",
    "StepBatchSize",
    "learning_rate_factor",
]


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_size(value, name):
    """A batch size a schedule may give: a positive int or ``'full'``."""
    if isinstance(value, str) and value == "full":
        return value
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer or 'full', got {value!r}.")
    return int(value)


class BatchSizeSchedule(metaclass=ABCMeta):
    """Base class of the batch-size schedules: the batch size of each epoch.

    A subclass implements ``__call__(epoch)``, returning a positive int (at
    most the number of training rows) or ``'full'`` (the whole training
    set), and stores its settings as attributes: schedules compare equal,
    hash and print by them, which ``sklearn.base.clone`` and the
    estimators' ``repr`` rely on. Define a subclass at module level so that
    it pickles with the fitted estimator.

    Plain callables are refused as ``batch_size``: a lambda or a function
    defined inside another cannot be pickled, so neither could the fitted
    estimator nor a ``GridSearchCV`` holding it, and two functions never
    compare equal.

    Examples
    --------
    >>> from skbatchnet.schedules import BatchSizeSchedule
    >>> class Warmup(BatchSizeSchedule):
    ...     def __init__(self, size):
    ...         self.size = size
    ...     def __call__(self, epoch):
    ...         return 1 if epoch == 0 else self.size
    >>> Warmup(16), Warmup(16) == Warmup(16), Warmup(16)(3)
    (Warmup(size=16), True, 16)
    """

    @abstractmethod
    def __call__(self, epoch):
        """The batch size of epoch ``epoch`` (0 for the first)."""

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), repr(self)))

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"


class StepBatchSize(BatchSizeSchedule):
    """A step table: the batch size from each listed epoch on.

    Parameters
    ----------
    sizes : dict of int to int or 'full'
        ``{epoch: batch_size}``; epoch 0 must be listed. Each size holds
        from its epoch up to the next one listed; ``'full'`` is the whole
        training set.

    Examples
    --------
    >>> from skbatchnet.schedules import StepBatchSize
    >>> schedule = StepBatchSize({0: 16, 5: 64})
    >>> schedule
    StepBatchSize({0: 16, 5: 64})
    >>> [schedule(epoch) for epoch in range(7)]
    [16, 16, 16, 16, 16, 64, 64]
    """

    def __init__(self, sizes):
        if not isinstance(sizes, dict):
            raise TypeError(
                "StepBatchSize takes a dict {epoch: batch_size}, got "
                f"{type(sizes).__name__}; for example StepBatchSize({{0: 8, 10: 32}})."
            )
        for epoch in sizes:
            if not _is_int(epoch) or epoch < 0:
                raise ValueError(
                    f"StepBatchSize's epochs must be integers >= 0, got {epoch!r}."
                )
        if 0 not in sizes:
            raise ValueError(
                "StepBatchSize needs the batch size of epoch 0, the first: "
                f"{sizes!r} has none. Add a key 0."
            )
        self.sizes = {
            int(epoch): _check_size(size, f"StepBatchSize's size at epoch {epoch}")
            for epoch, size in sorted(sizes.items())
        }

    def __call__(self, epoch):
        epochs = list(self.sizes)
        return self.sizes[epochs[bisect_right(epochs, epoch) - 1]]

    def __repr__(self):
        return f"{type(self).__name__}({self.sizes!r})"


class GeometricBatchSize(BatchSizeSchedule):
    """A batch that grows by ``factor`` every ``every`` epochs, up to ``maximum``.

    The batch size of epoch ``e`` is ``min(start * factor ** (e // every),
    maximum)``.

    Parameters
    ----------
    start : int
        The batch size of the first ``every`` epochs.
    maximum : int
        The largest batch size; at most the number of training rows.
    every : int, default=1
        Epochs between two growths.
    factor : int, default=2
        Growth factor, at least 2 (an integer, so every size is exact).

    Examples
    --------
    >>> from skbatchnet.schedules import GeometricBatchSize
    >>> schedule = GeometricBatchSize(4, 100, every=2, factor=5)
    >>> [schedule(epoch) for epoch in range(6)]
    [4, 4, 20, 20, 100, 100]
    """

    def __init__(self, start, maximum, *, every=1, factor=2):
        for name, value, least in (
            ("start", start, 1),
            ("maximum", maximum, 1),
            ("every", every, 1),
            ("factor", factor, 2),
        ):
            if not _is_int(value) or value < least:
                raise ValueError(
                    f"GeometricBatchSize's {name} must be an integer >= {least}, "
                    f"got {value!r}."
                )
        if maximum < start:
            raise ValueError(
                f"GeometricBatchSize's maximum={maximum!r} is below its "
                f"start={start!r}. Set maximum >= start."
            )
        self.start, self.maximum = int(start), int(maximum)
        self.every, self.factor = int(every), int(factor)

    def __call__(self, epoch):
        size, growths = self.start, epoch // self.every
        # At most log_factor(maximum / start) multiplications, however late
        # the epoch: the exact power would be a huge integer.
        while growths > 0 and size < self.maximum:
            size, growths = size * self.factor, growths - 1
        return min(size, self.maximum)


class AdaptiveBatchSize(BatchSizeSchedule):
    """A batch that follows the gradient noise scale tracked while training.

    ``batch_size='adaptive'`` is ``AdaptiveBatchSize()``. Training tracks the
    noise scale ``B_noise`` at every step (``track_noise_scale`` is implied)
    and, after each epoch, :meth:`next_size` sets the next epoch's batch from
    the epoch's ``B_noise``:

    - the target is ``fraction * B_noise``. McCandlish et al. (2018) relate
      the examples ``E`` a batch of ``B`` rows needs to reach a loss to the
      fewest, ``E = E_min (1 + B / B_noise)``: at the default fraction, 0.1,
      training needs at most a tenth more examples than the smallest batches
      would, at far fewer steps;
    - the batch moves by at most ``growth`` per epoch, up or down;
    - it stays within ``[minimum, maximum]``, and leaves at least
      ``min_steps`` steps per epoch (at most ``n_samples // min_steps`` rows);
    - an epoch without an estimate (NaN: no step of two rows) keeps the
      batch; an infinite estimate (the squared gradient's estimate not
      positive: no batch the data can tell from the full batch) grows it by
      ``growth``; an estimate of 0 (no noise) shrinks it by ``growth``.

    The first epoch of a fit has ``start`` rows; ``partial_fit`` continues
    from the last epoch recorded. The learning rate follows
    ``learning_rate_scaling`` with ``start`` as the reference
    (:func:`learning_rate_factor`).

    Parameters
    ----------
    start : int, default=8
        The first epoch's batch size, at least 2 (a noise scale needs two
        rows per step).
    minimum, maximum : int, default=2 and None
        Bounds on the batch size; ``minimum`` at least 2, None: no upper
        bound but the steps per epoch.
    fraction : float, default=0.1
        The batch size aimed at, as a fraction of the noise scale.
    growth : float, default=2.0
        The largest factor between two epochs' batch sizes, above 1.
    min_steps : int, default=8
        The fewest steps per epoch.

    Examples
    --------
    >>> from skbatchnet.schedules import AdaptiveBatchSize
    >>> rule = AdaptiveBatchSize()
    >>> rule(0)
    8
    >>> rule.next_size(8, 300.0, 10_000), rule.next_size(8, 40.0, 10_000)
    (16, 4)
    >>> rule.next_size(8, float("inf"), 10_000), rule.next_size(8, float("nan"), 100)
    (16, 8)
    """

    def __init__(
        self, start=8, *, minimum=2, maximum=None, fraction=0.1, growth=2.0,
        min_steps=8,
    ):  # fmt: skip
        for name, value in (("start", start), ("minimum", minimum)):
            if not _is_int(value) or value < 2:
                raise ValueError(
                    f"AdaptiveBatchSize's {name} must be an integer >= 2 (a noise "
                    f"scale needs two rows per step), got {value!r}."
                )
        if maximum is not None and (not _is_int(maximum) or maximum < minimum):
            raise ValueError(
                f"AdaptiveBatchSize's maximum={maximum!r} must be None or an "
                f"integer >= minimum={minimum!r}. Set maximum >= minimum."
            )
        if not minimum <= start <= (start if maximum is None else maximum):
            raise ValueError(
                f"AdaptiveBatchSize's start={start!r} is outside [minimum, "
                f"maximum] = [{minimum!r}, {maximum!r}]. Move start inside them."
            )
        if not (isinstance(fraction, int | float) and 0 < fraction < math.inf):
            raise ValueError(
                f"AdaptiveBatchSize's fraction must be positive, got {fraction!r}."
            )
        if not (isinstance(growth, int | float) and 1 < growth < math.inf):
            raise ValueError(
                f"AdaptiveBatchSize's growth must be above 1, got {growth!r}."
            )
        if not _is_int(min_steps) or min_steps < 1:
            raise ValueError(
                f"AdaptiveBatchSize's min_steps must be an integer >= 1, got "
                f"{min_steps!r}."
            )
        self.start, self.minimum, self.maximum = int(start), int(minimum), maximum
        self.fraction, self.growth = float(fraction), float(growth)
        self.min_steps = int(min_steps)

    def __call__(self, epoch):
        """The first epoch's size; later ones come from :meth:`next_size`."""
        return self.start

    def bounds(self, size, n_samples):
        """The sizes the epoch after one of ``size`` rows may take."""
        high = n_samples // self.min_steps
        if self.maximum is not None:
            high = min(high, self.maximum)
        high = min(high, math.floor(size * self.growth))
        low = max(self.minimum, math.ceil(size / self.growth))
        # Too few rows for min_steps steps of minimum rows: the fewest rows.
        high = max(high, min(self.minimum, n_samples))
        return min(low, high), high

    def next_size(self, size, noise_scale, n_samples):
        """The batch size of the epoch after one of ``size`` rows whose
        noise scale was ``noise_scale``, on ``n_samples`` training rows."""
        low, high = self.bounds(size, n_samples)
        if math.isnan(noise_scale):
            target = size
        elif math.isinf(noise_scale):
            target = high
        else:
            target = round(self.fraction * noise_scale)
        return int(min(max(target, low), high))


# The exponent p of each rule: the effective rate (the step per unit of the
# batch's mean gradient) is proportional to batch_size ** p.
RATE_RULES = {"linear": 1.0, "sqrt": 0.5}
# The rule 'auto' picks: SGD leaves the rate alone (under 'sum' the step
# grows linearly with the batch by construction, under 'mean' a growing
# batch anneals the noise at a fixed rate, as in Smith et al. 2017); Adam
# takes the square root (Malladi et al. 2022, "On the SDEs and scaling rules
# for adaptive gradient algorithms").
AUTO_RULES = {"sgd": None, "adam": "sqrt"}


def learning_rate_factor(
    rule, batch_size, first_batch_size, *, solver, gradient_reduction
):
    """The factor on the learning rate of an epoch of ``batch_size`` rows.

    With ``r = batch_size / first_batch_size``, the factor is
    ``r ** (p - c)``:

    - ``p`` is the rule's exponent: 1 for ``'linear'``, 1/2 for ``'sqrt'``;
      ``None`` leaves the rate as it is (the factor is 1), and ``'auto'`` is
      ``None`` for ``'sgd'`` and ``'sqrt'`` for ``'adam'``;
    - ``c`` is what the step already carries: 1 for SGD under
      ``gradient_reduction='sum'``, whose step ``rate * sum_B s_i g_i``
      grows with the batch's weight (so ``'linear'`` keeps the rate and
      ``'sqrt'`` divides it by ``sqrt(r)``); 0 under ``'mean'`` and
      ``'unbiased'``, and 0 for Adam under any reduction, since Adam divides
      the gradient's scale out.

    The rules are exact for plain SGD in the limit of small steps; with
    momentum, whose velocity carries steps of the previous rate into the
    epoch, and for Adam, whose moments do the same, they are approximate.

    Parameters
    ----------
    rule : {'auto', 'linear', 'sqrt'} or None
    batch_size, first_batch_size : int
        The epoch's batch size, and the schedule's at epoch 0.
    solver : {'sgd', 'adam'}
    gradient_reduction : {'mean', 'sum', 'unbiased'}

    Returns
    -------
    factor : float

    Examples
    --------
    >>> from skbatchnet.schedules import learning_rate_factor
    >>> learning_rate_factor("linear", 64, 16, solver="sgd", gradient_reduction="mean")
    4.0
    >>> learning_rate_factor("linear", 64, 16, solver="sgd", gradient_reduction="sum")
    1.0
    >>> learning_rate_factor("sqrt", 64, 16, solver="sgd", gradient_reduction="sum")
    0.5
    """
    if rule == "auto":
        rule = AUTO_RULES[solver]
    if rule is None or batch_size == first_batch_size:
        return 1.0
    carried = 1.0 if solver == "sgd" and gradient_reduction == "sum" else 0.0
    exponent = RATE_RULES[rule] - carried
    ratio = batch_size / first_batch_size
    if exponent == 0.5:
        return math.sqrt(ratio)
    if exponent == -0.5:
        return 1.0 / math.sqrt(ratio)
    return ratio**exponent
