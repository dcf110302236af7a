"""The training record: the counters and curves a fit reports, and the
stopping rule's bookkeeping over them.

:class:`Progress` is what an estimator publishes as ``n_iter_``,
``loss_curve_``, ``clip_fraction_curve_``...; :func:`update_stopping` records
each epoch for the ``tol`` / ``n_iter_no_change`` rule, on the training loss
or on a held-out score.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Progress", "update_stopping"]


@dataclass
class Progress:
    """Where training stands: the counters and curves an estimator reports.

    The fields without a leading underscore are published as the fitted
    attributes of the same name followed by ``_`` (``n_iter_``, ``t_``...).
    """

    n_iter: int = 0
    t: int = 0
    loss_curve: list = field(default_factory=list)
    best_loss: float | None = np.inf
    validation_scores: list | None = None
    validation_loss_curve: list | None = None
    best_validation_score: float | None = None
    n_steps_per_epoch: list = field(default_factory=list)
    n_samples_per_epoch: list = field(default_factory=list)
    clip_fraction_curve: list | None = None
    batch_size_curve: list = field(default_factory=list)
    noise_scale_curve: list | None = None
    squared_gradient_curve: list | None = None
    gradient_variance_curve: list | None = None
    _no_improvement_count: int = 0
    _best_parameters: np.ndarray | None = None

    def record(
        self, loss, steps, samples, clip_fraction=None, batch_size=None, noise=None
    ):
        """Append an epoch (or L-BFGS iteration) to the curves.

        ``batch_size`` is the epoch's batch size (an L-BFGS iteration's is
        the whole training set).

        ``clip_fraction`` is the fraction of the epoch's rows whose gradient
        was clipped (None: trained without clipping). The clipping curve
        starts with the first epoch trained with clipping, NaN for the
        epochs before it, and then has one entry per epoch, NaN for an epoch
        trained without clipping.

        ``noise`` is ``(sum of |G|^2 estimates, sum of tr(Sigma) estimates,
        steps)`` of an epoch that tracked the gradient noise scale
        (:mod:`skbatchnet._noise_scale`); its curves start and pad as the
        clipping curve does.
        """
        self._record_noise(noise)
        if clip_fraction is not None and self.clip_fraction_curve is None:
            self.clip_fraction_curve = [np.nan] * len(self.loss_curve)
        if self.clip_fraction_curve is not None:
            fraction = np.nan if clip_fraction is None else clip_fraction
            self.clip_fraction_curve.append(fraction)
        self.loss_curve.append(loss)
        self.n_steps_per_epoch.append(steps)
        self.n_samples_per_epoch.append(samples)
        self.batch_size_curve.append(batch_size)

    def _record_noise(self, noise):
        """The epoch's noise scale and its terms: each sum over the tracked
        steps divided by their count (numerator and denominator smoothed
        apart, then divided). NaN for an epoch without a tracked step; inf
        where the |G|^2 estimate is not positive (no batch size the data can
        tell from the full batch)."""
        names = ("squared_gradient_curve", "gradient_variance_curve")
        if noise is not None and self.noise_scale_curve is None:
            for name in ("noise_scale_curve", *names):
                setattr(self, name, [np.nan] * len(self.loss_curve))
        if self.noise_scale_curve is None:
            return
        g2 = trace = scale = np.nan
        if noise is not None and noise[2]:
            g2, trace = noise[0] / noise[2], noise[1] / noise[2]
            scale = trace / g2 if g2 > 0 else np.inf
        self.noise_scale_curve.append(scale)
        self.squared_gradient_curve.append(g2)
        self.gradient_variance_curve.append(trace)

    def reset_stopping(self, early_stopping):
        """Start the bookkeeping of the stopping rule afresh."""
        self._no_improvement_count = 0
        self._best_parameters = None
        if early_stopping:
            self.validation_scores, self.validation_loss_curve = [], []
            self.best_validation_score, self.best_loss = -np.inf, None
        else:
            self.validation_scores, self.validation_loss_curve = None, None
            self.best_validation_score, self.best_loss = None, np.inf

    def attributes(self):
        """The fitted attributes, ``{name + '_': value}``."""
        out = {
            f"{name}_": value
            for name, value in vars(self).items()
            if not name.startswith("_")
        }
        if self.validation_loss_curve is None:
            del out["validation_loss_curve_"]
        return out


def _count_no_improvement(progress, improved):
    """The stopping rule's counter: consecutive epochs without improvement."""
    if improved:
        progress._no_improvement_count = 0
    else:
        progress._no_improvement_count += 1


def update_stopping(progress, network, validation, *, stopping, score):
    """Record the epoch for the stopping rule (training loss or validation score).

    With a held-out set the best parameters seen are kept in ``progress``.
    """
    if validation is None:
        loss = progress.loss_curve[-1]
        _count_no_improvement(progress, not loss > progress.best_loss - stopping.tol)
        if loss < progress.best_loss:
            progress.best_loss = loss
        return
    X_val, Y_val, y_val, w_val = validation
    logits = network.decision_function(X_val)
    losses = network.per_example_loss_from_logits(Y_val, logits)
    val_score = score(network.output_from_logits(logits), y_val, w_val)
    # In float64: float32 weights can sum past float32's range.
    losses = losses.astype(np.float64, copy=False)
    progress.validation_loss_curve.append(float(np.average(losses, weights=w_val)))
    progress.validation_scores.append(val_score)
    if stopping.verbose:
        print(f"Validation score: {val_score:f}")
    improved = not val_score < progress.best_validation_score + stopping.tol
    _count_no_improvement(progress, improved)
    if val_score > progress.best_validation_score:
        progress.best_validation_score = val_score
        progress._best_parameters = network.parameters.copy()
