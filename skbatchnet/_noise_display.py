"""The gradient noise scale over training, beside the batch size used.

:class:`NoiseScaleDisplay` draws what ``track_noise_scale=True`` records:
each epoch's noise scale ``B_simple = tr(Sigma) / |G|^2``, the batch size the
epoch trained with, and, on request, the two terms. Public through
:mod:`skbatchnet.plotting`; matplotlib is imported only when drawing.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import final_estimator
from ._pyplot import import_pyplot

__all__ = ["NoiseScaleDisplay"]


def _tracked(estimator):
    """The estimator's noise-scale curves, or a TypeError that says how."""
    final, _ = final_estimator(estimator)
    check_is_fitted(final)
    curve = getattr(final, "noise_scale_curve_", None)
    if curve is None:
        raise TypeError(
            f"{type(final).__name__} has no noise_scale_curve_ to plot: fit it "
            "with track_noise_scale=True (solver='sgd' or 'adam', without DP "
            "noise or clipping)."
        )
    return final


class NoiseScaleDisplay:
    """The gradient noise scale of each epoch, and the batch size used.

    Make one with :meth:`from_estimator`. Epochs without an estimate (NaN)
    leave a gap; an infinite estimate (the squared gradient's estimate not
    positive) is drawn at the top of the axes as a marker ``^``.

    Parameters
    ----------
    noise_scale : ndarray
        Each epoch's noise scale.
    batch_size : ndarray
        Each epoch's batch size.
    squared_gradient, gradient_variance : ndarray
        The noise scale's terms, per epoch.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The noise scale.
    batch_line_ : matplotlib Line2D
        The batch size.
    term_lines_ : list of Line2D
        The terms' lines, on a second axes, when drawn.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from skbatchnet import BatchMLPClassifier
    >>> from skbatchnet.plotting import NoiseScaleDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> model = BatchMLPClassifier(
    ...     batch_size=32, max_iter=5, track_noise_scale=True, random_state=0
    ... ).fit(X / 16, y)
    >>> display = NoiseScaleDisplay.from_estimator(model)
    >>> len(display.line_.get_xdata())
    5
    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    """

    def __init__(self, noise_scale, batch_size, squared_gradient, gradient_variance):
        self.noise_scale = np.asarray(noise_scale, dtype=float)
        self.batch_size = np.asarray(batch_size, dtype=float)
        self.squared_gradient = np.asarray(squared_gradient, dtype=float)
        self.gradient_variance = np.asarray(gradient_variance, dtype=float)

    def plot(self, ax=None, *, terms=False, **kwargs):
        """Draw on ``ax`` (a new figure by default); ``terms`` adds the two
        terms on a second y axis. ``kwargs`` go to the noise scale's line."""
        plt = import_pyplot("NoiseScaleDisplay")
        if ax is None:
            _, ax = plt.subplots()
        epochs = np.arange(1, self.noise_scale.size + 1)
        finite = np.where(np.isinf(self.noise_scale), np.nan, self.noise_scale)
        (self.line_,) = ax.plot(
            epochs, finite, **{"label": "noise scale B_simple", **kwargs}
        )
        (self.batch_line_,) = ax.step(
            epochs, self.batch_size, where="mid", label="batch size", color="0.4"
        )
        ax.set_yscale("log")
        infinite = np.isinf(self.noise_scale)
        if infinite.any():
            # At the top of the axes whatever its limits: x in data, y in axes
            # coordinates, so the markers do not stretch the y axis either.
            ax.plot(epochs[infinite], np.full(infinite.sum(), 0.96), "^", color="C3",
                    transform=ax.get_xaxis_transform(), clip_on=False,
                    label="noise scale inf")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("rows")
        self.term_lines_ = []
        if terms:
            twin = ax.twinx()
            self.term_lines_ = [
                twin.plot(epochs, self.squared_gradient, "--", label="|G|^2")[0],
                twin.plot(epochs, self.gradient_variance, ":", label="tr(Sigma)")[0],
            ]
            twin.set_yscale("symlog", linthresh=1e-8)
            twin.set_ylabel("estimate")
            twin.legend(loc="lower right")
        ax.legend(loc="upper left")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, terms=False, **kwargs):
        """Plot a fitted estimator (or pipeline ending with one) trained with
        ``track_noise_scale=True``.

        Raises
        ------
        TypeError
            If the estimator did not track the noise scale.
        """
        final = _tracked(estimator)
        display = cls(
            final.noise_scale_curve_,
            final.batch_size_curve_,
            final.squared_gradient_curve_,
            final.gradient_variance_curve_,
        )
        return display.plot(ax, terms=terms, **kwargs)
