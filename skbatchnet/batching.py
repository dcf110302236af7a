"""The minibatcher: how one pass over the data becomes a sequence of steps.

Examples
--------
>>> from skbatchnet.batching import Minibatcher
>>> mb = Minibatcher(batch_size=4, shuffle=False)
>>> [list(range(10))[b] for b in next(mb.iter_epochs(10))]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
>>> mb = Minibatcher(batch_size=4, shuffle=False, drop_last="merge")
>>> [list(range(10))[b] for b in next(mb.iter_epochs(10))]
[[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]
"""

import math
from numbers import Integral
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["Minibatcher", "PoissonBatcher", "PoissonEpoch", "resolve_batch_size"]

_LAST_BATCH_POLICIES = (False, True, "merge")


def resolve_batch_size(batch_size, n_samples):
    """The number of rows per batch for a data set of ``n_samples`` rows.

    ``'auto'`` is ``min(200, n_samples)``, ``'full'`` is ``n_samples``, and an
    integer larger than the data set is the whole set.

    Examples
    --------
    >>> resolve_batch_size("auto", 1000), resolve_batch_size("full", 1000)
    (200, 1000)
    >>> resolve_batch_size(64, 10)
    10
    """
    if isinstance(batch_size, str):
        if batch_size == "auto":
            return min(200, n_samples)
        if batch_size == "full":
            return n_samples
    elif isinstance(batch_size, Integral) and not isinstance(batch_size, bool):
        if batch_size >= 1:
            return min(int(batch_size), n_samples)
    raise ValueError(
        f"batch_size must be a positive integer, 'auto' or 'full', got {batch_size!r}."
    )


class Minibatcher:
    """Turns a data set into minibatches of rows, epoch after epoch.

    It yields rows only: how a batch's per-example gradients are combined is
    the reduction's business (:func:`skbatchnet.reduction.reduction_coefficients`),
    a function of the rows' sample weights, so the same batching serves
    wherever the weights live.

    Parameters
    ----------
    batch_size : int, 'auto' or 'full', default='auto'
        Rows per step: 1 is stochastic gradient descent, an integer is a
        minibatch, ``'auto'`` is ``min(200, n_samples)`` and ``'full'`` is
        gradient descent on the whole set. A batch larger than the data set is
        the whole set.
    shuffle : bool, default=True
        Draw a new order of the examples at every epoch.
    drop_last : bool or 'merge', default=False
        What happens to a last batch shorter than ``batch_size``: ``False``
        keeps it as a short step, ``True`` drops it (those examples wait for
        the next epoch's order), ``'merge'`` adds it to the batch before, so
        every step has between ``batch_size`` and ``2 * batch_size - 1`` rows.
        A data set smaller than one batch is always one batch.
    random_state : int, RandomState instance or None, default=None
        Source of the shuffles. A RandomState instance is advanced in place,
        which lets an estimator draw its initialization and its shuffles from
        one stream.

    Notes
    -----
    Each epoch permutes the previous epoch's order (as scikit-learn's MLP
    does), drawing one ``RandomState.shuffle`` of ``arange(n_samples)``, so
    the same seed gives the same batches as scikit-learn.
    """

    def __init__(
        self,
        batch_size="auto",
        *,
        shuffle=True,
        drop_last=False,
        random_state=None,
    ):
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.random_state = random_state

    def _check(self, n_samples):
        if not (
            isinstance(n_samples, Integral)
            and not isinstance(n_samples, bool)
            and n_samples >= 1
        ):
            raise ValueError(
                f"n_samples must be a positive integer, got {n_samples!r}: an epoch "
                "needs at least one row."
            )
        if not any(self.drop_last is p for p in _LAST_BATCH_POLICIES):
            if self.drop_last != "merge":
                raise ValueError(
                    f"drop_last must be False, True or 'merge', got {self.drop_last!r}."
                )

    def bounds(self, n_samples):
        """``(start, stop)`` of each batch in an epoch of ``n_samples`` rows."""
        self._check(n_samples)
        size = resolve_batch_size(self.batch_size, n_samples)
        starts = list(range(0, n_samples, size))
        bounds = [(s, min(s + size, n_samples)) for s in starts]
        short = len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < size
        if short and self.drop_last is True:
            bounds.pop()
        elif short and self.drop_last == "merge":
            start, _ = bounds[-2]
            bounds[-2:] = [(start, n_samples)]
        return bounds

    def n_steps(self, n_samples):
        """Optimizer steps in an epoch of ``n_samples`` rows.

        Examples
        --------
        >>> Minibatcher(4, drop_last=True).n_steps(10)
        2
        """
        return len(self.bounds(n_samples))

    def iter_orders(self, n_samples):
        """Yield, for each epoch, the order in which its rows are visited.

        Each epoch permutes the previous epoch's order by one
        ``RandomState.shuffle`` of ``arange(n_samples)``, as scikit-learn's
        MLP does. The order inside one batch does not change its gradient,
        so when the rows keep their stored order, or one batch holds them
        all, None is yielded instead: the batches are then plain slices (the
        draw still happens, which keeps the random stream in step).

        Parameters
        ----------
        n_samples : int

        Yields
        ------
        order : ndarray of int of shape (n_samples,) or None
        """
        bounds = self.bounds(n_samples)
        rng = check_random_state(self.random_state)
        single = len(bounds) == 1 and bounds[0] == (0, n_samples)
        # One batch of all the rows never needs its order: only the draw.
        order = None if single or not self.shuffle else np.arange(n_samples)
        while True:
            if self.shuffle:
                permutation = np.arange(n_samples)
                rng.shuffle(permutation)
                if order is not None:
                    order = order[permutation]
            yield order

    def batches(self, order, n_samples):
        """The batches of an epoch visiting the rows in ``order`` (see
        :meth:`iter_orders`): slices for None, index arrays otherwise."""
        if order is None:
            return [slice(start, stop) for start, stop in self.bounds(n_samples)]
        return [order[start:stop] for start, stop in self.bounds(n_samples)]

    def iter_epochs(self, n_samples):
        """Yield, for each epoch, the list of batches.

        A batch is a ``slice`` into the data when the rows are in their
        stored order and an index array otherwise.

        Parameters
        ----------
        n_samples : int

        Yields
        ------
        batches : list of slice or ndarray of int
        """
        for order in self.iter_orders(n_samples):
            yield self.batches(order, n_samples)


class PoissonEpoch(NamedTuple):
    """One epoch of Poisson batches: batch ``b`` is ``order[start:stop]``,
    ``(start, stop) = bounds[b]``; a row may appear in several batches."""

    order: np.ndarray
    bounds: np.ndarray


class PoissonBatcher:
    """Batches drawn by Poisson sampling, DP-SGD's batching policy.

    Each step takes every row independently with probability
    ``q = batch_size / n_samples``: its size is drawn from
    ``Binomial(n_samples, q)``, then its rows uniformly without replacement,
    which is the same distribution at the cost of the rows drawn (not one
    coin per row). An epoch is ``ceil(n_samples / batch_size)`` steps, so it
    visits ``n_samples`` rows on average; a row may be drawn in several of
    its batches or in none, and a batch may be empty. ``shuffle`` and
    ``drop_last`` have no meaning here.

    Parameters
    ----------
    batch_size : int, 'auto' or 'full', default='auto'
        The expected batch size, ``q * n_samples``, resolved as for
        :class:`Minibatcher`; ``'full'`` takes every row at every step.
    random_state : numpy.random.Generator
        The source of the batches, advanced in place. A Generator, not a
        seed: under DP noise the batches must not be reproducible from
        public parameters.

    Examples
    --------
    >>> import numpy as np
    >>> batcher = PoissonBatcher(4, np.random.default_rng(0))
    >>> batcher.n_steps(10), batcher.sample_rate(10)
    (3, 0.4)
    >>> epoch = next(batcher.iter_orders(10))
    >>> len(epoch.bounds)
    3
    """

    def __init__(self, batch_size="auto", random_state=None):
        self.batch_size = batch_size
        self.random_state = random_state

    def _generator(self):
        if not isinstance(self.random_state, np.random.Generator):
            raise TypeError(
                "PoissonBatcher draws from a numpy Generator, got "
                f"{type(self.random_state).__name__}. Pass "
                "numpy.random.default_rng(...) (or a Generator of fresh OS "
                "entropy)."
            )
        return self.random_state

    def sample_rate(self, n_samples):
        """``q = batch_size / n_samples``, each row's chance to be in a batch."""
        return resolve_batch_size(self.batch_size, n_samples) / n_samples

    def n_steps(self, n_samples):
        """Steps per epoch: ``ceil(n_samples / batch_size)``."""
        return math.ceil(n_samples / resolve_batch_size(self.batch_size, n_samples))

    def bounds(self, n_samples):
        """The widest batch an epoch can bring: every row."""
        return [(0, n_samples)]

    def iter_orders(self, n_samples):
        """Yield a :class:`PoissonEpoch` per epoch.

        Each epoch draws its steps' sizes first, then each step's rows, in
        that order, from the generator.
        """
        rng, q = self._generator(), self.sample_rate(n_samples)
        steps = self.n_steps(n_samples)
        while True:
            sizes = rng.binomial(n_samples, q, size=steps)
            order = np.concatenate(
                [rng.choice(n_samples, size, replace=False) for size in sizes]
            ).astype(np.intp, copy=False)
            stops = np.cumsum(sizes)
            yield PoissonEpoch(order, np.stack([stops - sizes, stops], axis=1))

    def batches(self, epoch, n_samples):
        """The index arrays of ``epoch``'s batches (see :meth:`iter_orders`)."""
        return [epoch.order[start:stop] for start, stop in epoch.bounds]
