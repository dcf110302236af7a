"""What makes ``fit`` and ``partial_fit`` atomic: rollback, one call at a time.

Two granularities of rollback: :func:`snapshot` / :func:`restore` take a
whole estimator back to where it was before a call that failed, and
:class:`Checkpoint` takes training back to the end of its last completed
epoch when it is interrupted. :func:`one_fit_at_a_time` refuses a second
call on an estimator that is being fitted, whose state the first call is
changing.
"""

import copy
import functools
import itertools
import threading

import numpy as np

__all__ = ["Checkpoint", "one_fit_at_a_time", "restore", "snapshot"]

# The estimators being fitted, by id(), each with the token of the call that
# fits it. Kept here and not on the estimator: a lock stored on the estimator
# would make it unpicklable (and so impossible to deepcopy or clone) while a
# fit runs. An id is held only during a call that holds a reference to the
# estimator, so it cannot be reused by another object meanwhile.
_FITTING = {}
_FITTING_LOCK = threading.Lock()
_TOKENS = itertools.count()


def one_fit_at_a_time(method):
    """Refuse ``method`` on an estimator that a call so decorated is fitting.

    Two threads fitting one estimator would interleave their steps on the
    same weights, optimizer and random stream (scikit-learn does not support
    it either). The second call raises a RuntimeError before it changes
    anything, so it must wrap every other layer of the method, the callback
    machinery's included: that machinery's cleanup would tear down the first
    call's callbacks. ``predict`` and the other readers stay free.
    """

    @functools.wraps(method)
    def exclusive(estimator, *args, **kwargs):
        key, token = id(estimator), next(_TOKENS)
        try:
            with _FITTING_LOCK:
                if key in _FITTING:
                    raise RuntimeError(
                        f"fit is already running on this estimator "
                        f"({type(estimator).__name__}), in another thread or in "
                        f"a callback of that fit, so {method.__name__} cannot "
                        "run now: both would change the same weights. To fit in "
                        "several threads, give each thread its own copy, "
                        "sklearn.base.clone(estimator); or wait for the "
                        "running fit to return."
                    )
                _FITTING[key] = token
            return method(estimator, *args, **kwargs)
        finally:
            # Only the call that registered the estimator releases it, also
            # on KeyboardInterrupt and when the call was refused.
            if _FITTING.get(key) == token:
                del _FITTING[key]

    return exclusive


_NUMBERS = (int, float, np.integer, np.floating)


def snapshot(estimator, keep_by_reference=()):
    """The estimator's fitted state, deep-copied, and its generators' states.

    Parameters (``get_params``) and the attributes named in
    ``keep_by_reference`` are kept by reference. Random generators
    (``random_state`` when it is a RandomState instance, and ``_rng``, the
    stream training draws from, often the same object) are kept by reference
    too and their states recorded, so a restore rewinds the very objects the
    caller holds.

    Returns
    -------
    backup : tuple
        For :func:`restore`.
    """
    params = estimator.get_params(deep=False)
    state = vars(estimator)
    generators = {
        id(g): g
        for g in (params.get("random_state"), state.get("_rng"))
        if isinstance(g, np.random.RandomState)
    }
    kept = {k for k in state if k in params or k in keep_by_reference}
    kept.add("_rng")
    # The curves (loss_curve_, ...) grow by an entry per epoch, and a
    # deepcopy visits each entry: copied whole, their numbers being
    # immutable, through the memo, so the training record that shares them
    # gets the same copies. One deepcopy call, so objects shared between
    # attributes stay shared.
    memo = {
        id(value): list(value)
        for value in state.values()
        if type(value) is list and all(isinstance(v, _NUMBERS) for v in value)
    }
    fitted = copy.deepcopy({k: v for k, v in state.items() if k not in kept}, memo)
    saved = {k: state[k] if k in kept else fitted[k] for k in state}
    return saved, [(g, g.get_state()) for g in generators.values()]


def restore(estimator, backup, keep=()):
    """Put ``estimator`` back as :func:`snapshot` found it.

    Attributes named in ``keep`` keep their current values (state that
    belongs to the call still under way).
    """
    saved, generators = backup
    current = vars(estimator)
    kept = {k: current[k] for k in keep if k in current}
    current.clear()
    current.update(saved)
    current.update(kept)
    for generator, state in generators:
        generator.set_state(state)


class Checkpoint:
    """Training as it stood at the end of an epoch: weights, optimizer, average.

    Parameters
    ----------
    parameters : ndarray
        The network's parameter vector (copied).
    optimizer : object
        Deep-copied.
    averager : WeightAverage or None
        Deep-copied.
    rng : RandomState
        Its state is recorded.
    """

    def __init__(self, parameters, optimizer, averager, rng):
        self.parameters = parameters.copy()
        self.optimizer = copy.deepcopy(optimizer)
        self.averager = copy.deepcopy(averager)
        self.rng, self.rng_state = rng, rng.get_state()

    def restore(self, parameters):
        """Write the weights back into ``parameters`` and rewind the generator.

        Returns
        -------
        optimizer, averager
            The optimizer and the weight average of the checkpoint.
        """
        parameters[...] = self.parameters
        self.rng.set_state(self.rng_state)
        return self.optimizer, self.averager
