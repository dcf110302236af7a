"""What an epoch reports: its sums, or where and how it diverged.

Both ways of running an epoch (the numpy specification in
:mod:`skbatchnet._training` and the compiled loop behind
:mod:`skbatchnet._compiled`) end the same way: with an :class:`EpochSums`, or
by raising :class:`Diverged`, which the epoch loop turns into the message of
:func:`divergence_error`.
"""

from typing import NamedTuple

__all__ = ["NON_FINITE", "Diverged", "EpochSums", "divergence_error"]


class EpochSums(NamedTuple):
    """What one epoch did.

    Attributes
    ----------
    loss_sum, weight_sum : float
        Sums over the steps taken of ``weight * loss`` and of ``weight``
        (each batch's loss is its estimate of ``E``); the epoch loss is their
        ratio, each batch weighted by its share of the weight seen.
    seen : int
        Rows seen, including those of skipped zero-weight batches.
    steps : int
        Optimizer steps taken.
    clipped : int
        Rows of those steps whose loss gradient was clipped (0 without
        clipping).
    """

    loss_sum: float
    weight_sum: float
    seen: int
    steps: int
    clipped: int = 0


# scikit-learn's sentence, first in every divergence message, so that code
# matching on it keeps working.
NON_FINITE = "Solver produced non-finite parameter weights."


class Diverged(ValueError):
    """A non-finite loss or weights inside an epoch: where, and how far it got.

    ``steps`` optimizer steps over ``seen`` rows were taken in the epoch. The
    epoch loop turns it into :func:`divergence_error`'s message; raised
    elsewhere (by a worker's local epoch, say) it reads as that error does.
    """

    def __init__(self, what, batch, steps, seen):
        super().__init__(
            f"{NON_FINITE} Training diverged: the {what} became non-finite in "
            f"batch {batch}, after {steps} steps. Lower learning_rate_init or "
            "scale the inputs."
        )
        self.what, self.batch, self.steps, self.seen = what, batch, steps, seen

    def __reduce__(self):  # pickled from a worker with its fields
        return type(self), (self.what, self.batch, self.steps, self.seen)


def divergence_error(where, *, stepped, learning_rate=None, reduction="mean"):
    """The ValueError of a diverged run, with its likely cause and remedies.

    ``where`` says what became non-finite and when; ``stepped`` whether any
    step was taken before (if not, the data overflowed, not the steps).
    """
    if not stepped:
        return ValueError(
            f"{NON_FINITE} Training diverged: {where}, before any step was "
            "taken, so the step size is not the cause: the inputs or the sample "
            "weights overflow (or underflow) the floating-point range. Scale the "
            "inputs (for example with StandardScaler), the targets, and the "
            "sample weights to moderate values."
        )
    rate = "" if learning_rate is None else f", at learning rate {learning_rate:g}"
    fixes = "scale the inputs (for example with StandardScaler) or the targets"
    if learning_rate is not None:
        fixes = f"lower learning_rate_init, {fixes}"
    if reduction == "sum":
        fixes += ", or use gradient_reduction='mean' instead of 'sum'"
    return ValueError(
        f"{NON_FINITE} Training diverged: {where}{rate}. To fix, {fixes}."
    )
