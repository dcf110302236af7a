"""What an epoch reports: its sums, or where and how it diverged.

Both ways of running an epoch (the numpy specification in
:mod:`skbatchnet._training` and the compiled loop behind
:mod:`skbatchnet._compiled`) end the same way: with an :class:`EpochSums`, or
by raising :class:`Diverged`, which the epoch loop turns into the message of
:func:`divergence_error`.
"""

import math
from typing import NamedTuple

__all__ = ["NON_FINITE", "Diverged", "EpochSums", "Penalty", "divergence_error"]


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
    noise_g2, noise_trace, noise_steps : float, float, int
        Under ``Step.track_noise``: the sums, over the steps of two rows or
        more, of the estimates of ``|G|^2`` and ``tr(Sigma)``
        (``_noise_scale.pxd``), and how many steps they sum.
    """

    loss_sum: float
    weight_sum: float
    seen: int
    steps: int
    clipped: int = 0
    noise_g2: float = 0.0
    noise_trace: float = 0.0
    noise_steps: int = 0


# scikit-learn's message, complete, first in every divergence message, so
# that code matching on it keeps working.
NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain "
    "large values and need to be preprocessed."
)


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


class Penalty(NamedTuple):
    """The L2 penalty of a diverged run, weighed as a cause of the divergence.

    The penalty ``(alpha / 2S) ||W||^2`` has the curvature ``h = alpha / S``
    in every direction. It is named as a likely cause when either

    - the penalty is at least as curved as a loss on standardized inputs
      (``h >= 1``) and SGD's steps on the penalty alone grow without bound: a
      step takes ``a = rate * h * mass`` times the weights away (``mass`` is
      1 with ``gradient_reduction='mean'``, a batch's weight with ``'sum'``),
      and on a quadratic of curvature ``h`` the iterates grow once ``a``
      exceeds ``limit``: 2 without momentum, ``2 (1 + mu)`` with momentum
      ``mu``, ``2 (1 + mu) / (1 + 2 mu)`` with Nesterov's. (At ``h < 1`` an
      ``a`` that large comes from the learning rate, which the message
      blames anyway); or
    - ``h ** 2 * n_parameters`` exceeds the largest float: at weights of
      order one the squared norm of the penalty's gradient overflows, for
      any solver, before any step too.

    Attributes
    ----------
    alpha, total : float
        ``alpha`` and ``S``, the training set's total sample weight.
    n_parameters : int
    largest : float
        The largest float of the network's dtype.
    rate : float or None
        SGD's learning rate; None for solvers whose step does not scale with
        the gradient (Adam) or that take no fixed step (L-BFGS).
    mass : float
    limit : float
    """

    alpha: float
    total: float
    n_parameters: int
    largest: float
    rate: float | None = None
    mass: float = 1.0
    limit: float = 2.0

    def blame(self, stepped=True):
        """``(sentence, alpha bound)`` if the penalty is a likely cause, else None.

        Below the bound, the penalty alone no longer diverges (overflows).
        Without a step taken (``stepped=False``) only the overflow can be the
        cause.
        """
        alpha, total = self.alpha, self.total
        if not alpha > 0:
            return None
        scale = f"with alpha={alpha:g} over a total sample weight S={total:g}"
        h = alpha / total
        if stepped and self.rate is not None and h >= 1:
            step = self.rate * alpha / total * self.mass
            if step > self.limit:
                mass = f" times a batch's weight {self.mass:g}"
                mass = "" if self.mass == 1 else mass
                return (
                    f"The L2 penalty is a likely cause: {scale}, a step on the "
                    f"penalty alone takes {step:.3g} times the weights away (the "
                    f"learning rate {self.rate:g} times alpha / S{mass}), and "
                    f"past {self.limit:.3g}, the limit at this momentum, such "
                    "steps grow without bound.",
                    alpha * self.limit / step,
                )
        if h * h * self.n_parameters > self.largest:
            return (
                f"The L2 penalty is a likely cause: {scale}, its curvature "
                f"alpha / S = {h:.3g} is so large that the penalty overflows the "
                "floating-point range at weights of order one (the squared norm "
                "of its gradient, (alpha / S)^2 ||W||^2, does).",
                total * math.sqrt(self.largest / self.n_parameters),
            )
        return None


def divergence_error(
    where, *, stepped, learning_rate=None, reduction="mean", penalty=None
):
    """The ValueError of a diverged run, with its likely cause and remedies.

    ``where`` says what became non-finite and when; ``stepped`` whether any
    step was taken before (if not, the data overflowed, not the steps, or
    the penalty did); ``penalty``, a :class:`Penalty`, whether alpha is to
    blame (None: not weighed).
    """
    blamed = penalty.blame(stepped) if penalty is not None else None
    cause, lower_alpha = "", ""
    if blamed is not None:
        cause = f" {blamed[0]}"
        lower_alpha = f"lower alpha below {blamed[1]:.3g}"
    if not stepped:
        if blamed is not None:
            return ValueError(
                f"{NON_FINITE} Training diverged: {where}, before any step was "
                f"taken, so the step size is not the cause.{cause} To fix, "
                f"{lower_alpha}; if that is not enough, scale the inputs, the "
                "targets and the sample weights to moderate values."
            )
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
    if lower_alpha:
        fixes = f"{lower_alpha}, {fixes}"
    return ValueError(
        f"{NON_FINITE} Training diverged: {where}{rate}.{cause} To fix, {fixes}."
    )
