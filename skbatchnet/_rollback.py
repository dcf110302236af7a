"""Snapshots and restores that make ``fit`` and ``partial_fit`` atomic.

Two granularities: :func:`snapshot` / :func:`restore` take a whole estimator
back to where it was before a call that failed, and :class:`Checkpoint` takes
training back to the end of its last completed epoch when it is interrupted.
"""

import copy

import numpy as np

__all__ = ["Checkpoint", "restore", "snapshot"]


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
    # One deepcopy call, so objects shared between attributes stay shared.
    fitted = copy.deepcopy({k: v for k, v in state.items() if k not in kept})
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
