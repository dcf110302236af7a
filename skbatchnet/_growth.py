"""The divergence-by-growth rule: epoch losses far above the first epoch's.

A step too large for its batch size and momentum makes the loss grow by a
roughly constant factor per epoch; it can take dozens of epochs to overflow,
and the weights it ends with are finite and useless. The rule compares every
epoch's training loss with the first epoch's since the weights were
initialized, ``loss_curve_[0]``, and declares a divergence when
:data:`GROWTH_EPOCHS` consecutive epochs exceed :data:`GROWTH_FACTOR` times
that.

Why the first epoch's loss: it is an average over the steps of the first
epoch, starting from the initial weights, so a healthy run rarely climbs back
above it, and it is never the tiny value a converging loss falls toward
(ratios to the best loss so far would flag every bump of a loss near 0).

Why 10^3: a loss that grows geometrically passes any fixed factor within a
few epochs (on the digits at batch size 1 and momentum 0.9 it multiplies by
5 to 10,000 per epoch, depending on the rows), so a larger factor costs
little, while runs that bounce and recover stay far below it: in the probes
behind this choice (SGD and Adam, batches of 1 to the full set, scaled and
unscaled data, 432 runs) they stayed within about 10 times their first
epoch's loss but for single epochs.

Why two epochs in a row: one step can overshoot and the next undo it (a
large rate's "catapult"; scikit-learn's estimator checks, on unscaled data,
raise a full-batch SGD regressor's loss 4,600 times for one epoch, and the
next epoch is back below its first; Adam at batch 1 did 1,100 times once in
the probes). A single epoch above the line is such a spike; a divergence
stays above it, in the probes for at least three epochs, so waiting for the
second costs one epoch.

:func:`skbatchnet._training.train_epochs` applies the rule; whether it stops
training or only warns is the rule's :attr:`LossGrowth.stops` and where the
first epoch was run (see there).
"""

from dataclasses import dataclass

__all__ = ["GROWTH_EPOCHS", "GROWTH_FACTOR", "LossGrowth"]

GROWTH_FACTOR = 1e3
GROWTH_EPOCHS = 2


@dataclass(frozen=True)
class LossGrowth:
    """The rule: ``epochs`` epoch losses in a row above ``factor`` times the
    first epoch's.

    Attributes
    ----------
    factor : float
        How many times the first epoch's loss an epoch's loss may reach.
    epochs : int
        How many consecutive epochs above the line make a divergence.
    stops : bool
        Whether a growth may stop training (with the divergence error, or at
        the best validated weights). False makes the rule only warn. Training
        under differentially private noise must set it False: a stop decided
        by the training data would reveal something about that data that the
        noise does not account for.
    """

    factor: float = GROWTH_FACTOR
    epochs: int = GROWTH_EPOCHS
    stops: bool = True

    def exceeded(self, first, loss):
        """Whether ``loss`` is above ``factor`` times ``first`` (a positive loss).

        A first loss of 0 (or nan) gives no scale to grow from: False.
        """
        return first > 0 and loss > self.factor * first

    def broken(self, curve, loss):
        """Whether an epoch of loss ``loss`` after the losses ``curve`` breaks
        the rule: it is the ``epochs``-th in a row above the line.

        Only that epoch breaks it, not the ones after it, so that a run that
        goes on past the line (where the rule only warns) is told once.
        """
        if not curve:
            return False
        # The last epochs + 1 losses, the first epoch's excepted.
        recent = curve[max(1, len(curve) - self.epochs) :] + [loss]
        above = [self.exceeded(curve[0], x) for x in recent]
        if len(above) < self.epochs or not all(above[-self.epochs :]):
            return False
        return len(above) == self.epochs or not above[0]

    def diagnosis(
        self, first, loss, epoch, *, optimizer, reduction, steps=2, penalty=None
    ):
        """Two clauses for the messages: what grew, how far and when; then the
        cause and the remedies, for the ``optimizer``, ``reduction``, ``steps``
        per epoch and L2 ``penalty`` (a :class:`~skbatchnet._outcome.Penalty`,
        which may name alpha) of the run."""
        where = (
            f"the training loss grew to {loss:.4g} in epoch {epoch}, more than "
            f"{self.factor:g} times the first epoch's {first:.4g}"
        )
        # Momentum multiplies the step by up to 1 / (1 - momentum); Adam's
        # moments do not (they divide out the gradient's scale).
        momentum = getattr(optimizer, "momentum", 0)
        fixes = ["lower learning_rate_init"] + ["lower momentum"] * bool(momentum)
        if reduction == "sum":
            fixes.append(
                "use gradient_reduction='mean' ('sum' steps grow with the batch)"
            )
        elif steps > 1:  # one step an epoch: the batch is already the whole set
            fixes.append("use a larger batch_size")
        cause = "batch size and momentum" if momentum else "batch size"
        cause = f"the step is too large for this {cause}."
        blamed = None if penalty is None else penalty.blame()
        if blamed is not None:
            cause += f" {blamed[0]}"
            fixes.insert(0, f"lower alpha below {blamed[1]:.3g}")
        fixes = ", ".join(fixes[:-1]) + ", or " * (len(fixes) > 1) + fixes[-1]
        return where, f"{cause} To fix, {fixes}"

    def error(self, first, loss, epoch, **run):
        """The divergence ValueError of an epoch that broke the rule; ``run``
        as :meth:`diagnosis` takes it."""
        where, remedy = self.diagnosis(first, loss, epoch, **run)
        return ValueError(
            f"Training diverged: {where}, at learning rate "
            f"{run['optimizer'].learning_rate:g}: {remedy}."
        )

    def warning(self, first, loss, epoch, **run):
        """The message of a growth the rule only warns about: training goes on,
        because the rule does not stop, or the first epoch was not this call's."""
        where, remedy = self.diagnosis(first, loss, epoch, **run)
        why = (
            "the first epoch was run by an earlier call (partial_fit, or fit "
            "with warm_start=True), maybe on other data"
            if self.stops
            else "the rule only warns in this run"
        )
        return f"Training diverged: {where}: {remedy}. Training goes on, as {why}."
