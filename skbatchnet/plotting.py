"""Plots of how training went: loss curves of fitted estimators, and the
gradient noise scale of those that tracked it (:class:`NoiseScaleDisplay`).

matplotlib is an optional dependency (the ``plot`` extra): this module imports
without it and asks for it only when something is drawn.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from sklearn.datasets import make_classification
>>> from skbatchnet import BatchMLPClassifier
>>> from skbatchnet.plotting import LossCurveDisplay
>>> X, y = make_classification(n_samples=120, random_state=0)
>>> fits = [
...     BatchMLPClassifier(batch_size=b, max_iter=15, random_state=0).fit(X, y)
...     for b in (8, "full")
... ]
>>> display = LossCurveDisplay.from_estimator(fits, x_axis="samples")
>>> # Both runs see the 120 training rows once per epoch:
>>> for line in display.lines_:
...     print(line.get_label(), line.get_xdata()[:3])
batch_size=8 [120 240 360]
batch_size=120 ('full') [120 240 360]
>>> import matplotlib.pyplot as plt
>>> plt.close(display.figure_)
"""

from collections.abc import Mapping

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import final_estimator
from ._noise_display import NoiseScaleDisplay
from ._pyplot import import_pyplot
from ._warn import warn
from .batching import Minibatcher

__all__ = ["LossCurveDisplay", "NoiseScaleDisplay"]

_X_AXES = ("epochs", "steps", "samples")
_LOG_SCALES = ("auto", "x", "y", "both")
# -- reading fitted estimators ---------------------------------------------------


def _check_estimator(estimator):
    final, _ = final_estimator(estimator)
    check_is_fitted(final)
    if not hasattr(final, "loss_curve_"):
        raise TypeError(
            f"{type(final).__name__} has no loss_curve_; LossCurveDisplay plots "
            "estimators that record one, such as BatchMLPClassifier and "
            "BatchMLPRegressor."
        )
    return final


def _is_lbfgs(estimator):
    return getattr(estimator, "solver", None) == "lbfgs"


def _recorded_x(estimator, x_axis):
    """Cumulative steps or samples as recorded in training, or None."""
    name = "n_steps_per_epoch_" if x_axis == "steps" else "n_samples_per_epoch_"
    counts = getattr(estimator, name, None)
    if counts is None or len(counts) != len(estimator.loss_curve_):
        return None
    return np.cumsum(np.asarray(counts, dtype=np.int64))


def _curve_x(estimator, x_axis):
    """x values of each point of ``estimator.loss_curve_``."""
    n_points = len(estimator.loss_curve_)
    points = np.arange(1, n_points + 1)
    if x_axis == "epochs":
        return points
    if _is_lbfgs(estimator):
        if x_axis == "steps":
            # One L-BFGS iteration is one step on the whole-set objective.
            return points
        raise ValueError(
            "x_axis='samples' is not meaningful for solver='lbfgs', which "
            "evaluates the whole training set (possibly several times) at each "
            "iteration. Use x_axis='epochs' or 'steps', which both count L-BFGS "
            "iterations."
        )
    recorded = _recorded_x(estimator, x_axis)
    if recorded is not None:
        return recorded
    # Estimators without per-epoch counts (such as scikit-learn's MLP): the
    # counts are reconstructed from t_ and batch_size_.
    batch_size = getattr(estimator, "batch_size_", None)
    seen = getattr(estimator, "t_", None)
    if batch_size is None or seen is None:
        raise TypeError(
            f"x_axis={x_axis!r} needs the fitted attributes batch_size_ and t_, "
            f"which {type(estimator).__name__} does not have. Use x_axis='epochs'."
        )
    if n_points == 0:
        return points
    rows, remainder = divmod(int(seen), n_points)
    if remainder:
        rows = seen / n_points
        warn(
            f"The {type(estimator).__name__}'s epochs did not all see the same "
            f"number of rows (t_={seen} over {n_points} epochs), as happens after "
            "partial_fit on chunks of different sizes or a warm start on other "
            "data; the x-axis uses the average number of rows per epoch and is "
            "approximate.",
            UserWarning,
        )
    if x_axis == "samples":
        return points * rows
    # The minibatcher, which made the batches, counts them. ``rows`` counts
    # the rows the solver actually used (t_ per epoch), so with
    # drop_last=True it already excludes the dropped rows and is a multiple
    # of batch_size_ (or one whole batch); with False or 'merge' every row
    # is used. An average over unequal epochs is rounded (already warned).
    batcher = Minibatcher(batch_size, drop_last=getattr(estimator, "drop_last", False))
    return points * batcher.n_steps(max(1, round(rows)))


def _default_labels(estimators):
    """Describe each estimator by its batch size, and by its solver, gradient
    reduction and last-batch policy when these vary (or are not the default)
    among the estimators plotted."""
    stochastic = [e for e in estimators if not _is_lbfgs(e)]
    show_solver = len({getattr(e, "solver", None) for e in stochastic}) > 1
    show_reduction = any(
        getattr(e, "gradient_reduction", "mean") != "mean" for e in stochastic
    )
    show_drop_last = any(
        getattr(e, "drop_last", False) is not False for e in stochastic
    )
    labels = []
    for estimator in estimators:
        if _is_lbfgs(estimator):
            labels.append("solver='lbfgs'")
            continue
        parts = [f"solver={estimator.solver!r}"] if show_solver else []
        resolved = getattr(estimator, "batch_size_", None)
        requested = getattr(estimator, "batch_size", None)
        if resolved is None:
            parts.append(f"batch_size={requested!r}")
        elif requested is None or (
            not isinstance(requested, str) and requested == resolved
        ):
            parts.append(f"batch_size={resolved}")
        else:
            # 'auto', 'full' or an integer larger than the data set.
            parts.append(f"batch_size={resolved} ({requested!r})")
        if show_reduction:
            reduction = getattr(estimator, "gradient_reduction", "mean")
            parts.append(f"gradient_reduction={reduction!r}")
        if show_drop_last:
            parts.append(f"drop_last={getattr(estimator, 'drop_last', False)!r}")
        labels.append(", ".join(parts))
    return _disambiguate(labels)


def _x_label(estimators, x_axis):
    if x_axis == "samples":
        return "Samples seen"
    n_lbfgs = sum(_is_lbfgs(e) for e in estimators)
    if n_lbfgs == len(estimators):
        return "L-BFGS iterations"
    name = "Epochs" if x_axis == "epochs" else "Optimizer steps"
    return f"{name} (L-BFGS: iterations)" if n_lbfgs else name


def _estimators_and_labels(estimator, labels):
    if isinstance(estimator, Mapping):
        if labels is not None:
            raise ValueError(
                "Pass labels either as the keys of a dict of estimators or as "
                "labels=, not both."
            )
        return list(estimator.values()), [str(key) for key in estimator]
    if isinstance(estimator, (list, tuple)):
        estimators = list(estimator)
    else:
        estimators = [estimator]
        if isinstance(labels, str):
            labels = [labels]
    if not estimators:
        raise ValueError("No estimator to plot: the list of estimators is empty.")
    if labels is not None:
        if isinstance(labels, str) or len(labels) != len(estimators):
            raise ValueError(
                f"labels must be a list with one label per estimator "
                f"({len(estimators)}), got {labels!r}."
            )
        labels = [str(label) for label in labels]
    return estimators, labels


def _disambiguate(labels):
    """Number labels that several curves share, so the legend tells them apart."""
    counts = {label: labels.count(label) for label in labels}
    return [
        f"{label} [{i}]" if counts[label] > 1 else label
        for i, label in enumerate(labels)
    ]


# -- the display -------------------------------------------------------------------


class LossCurveDisplay:
    """Loss curves of one or several fitted estimators.

    Compares how training went, for example at different batch sizes. Build it
    with :meth:`from_estimator`, which also draws it; the constructor only
    stores data (to plot curves recorded elsewhere) and :meth:`plot` draws
    them.

    Parameters
    ----------
    loss_curves : list of array-like of shape (n_points_i,)
        Training loss of each curve, for example ``estimator.loss_curve_``.

    x : list of array-like of shape (n_points_i,)
        Position on the x-axis of each point of each curve.

    labels : list of str, default=None
        Legend entry of each curve. None draws the curves without labels (and
        calls them "training" and "validation" when a validation curve is
        drawn).

    validation_loss_curves : list of array-like or None, default=None
        Validation loss of each curve, or None for a curve without one. A
        validation curve may be shorter than its training curve; it is drawn
        at the last ``len(validation)`` positions of the curve's ``x``.

    x_label : str, default="Epochs"
        Label of the x-axis.

    y_label : str, default="Loss"
        Label of the y-axis.

    Attributes
    ----------
    figure_ : matplotlib Figure
        Figure containing the curves.

    ax_ : matplotlib Axes
        Axes with the curves.

    lines_ : list of matplotlib Line2D
        The training curve of each entry of ``loss_curves``, in order.

    validation_lines_ : list of (matplotlib Line2D or None) or None
        The validation curve drawn for each entry of ``loss_curves`` (None for
        a curve without one), or None when no curve has a validation curve.
        A validation line has the color of its training line, is dashed and
        is labeled ``"<label> (validation)"``; with ``labels``, the legend
        lists each run once and adds a gray key to the two line styles.

    See Also
    --------
    LossCurveDisplay.from_estimator : Plot the loss curves of fitted estimators.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skbatchnet.plotting import LossCurveDisplay
    >>> display = LossCurveDisplay(
    ...     loss_curves=[[0.9, 0.5, 0.4], [0.7, 0.3]],
    ...     x=[[1, 2, 3], [2, 4]],
    ...     labels=["run A", "run B"],
    ...     x_label="Optimizer steps",
    ... )
    >>> display = display.plot(log_scale=False)
    >>> display.lines_[1].get_xdata()
    array([2, 4])
    >>> display.ax_.get_xlabel()
    'Optimizer steps'
    >>> import matplotlib.pyplot as plt
    >>> plt.close(display.figure_)
    """

    def __init__(
        self,
        *,
        loss_curves,
        x,
        labels=None,
        validation_loss_curves=None,
        x_label="Epochs",
        y_label="Loss",
    ):
        self.loss_curves = loss_curves
        self.x = x
        self.labels = labels
        self.validation_loss_curves = validation_loss_curves
        self.x_label = x_label
        self.y_label = y_label

    def _validated_data(self):
        curves = [np.asarray(c, dtype=float) for c in self.loss_curves]
        xs = [np.asarray(x) for x in self.x]
        n = len(curves)
        if len(xs) != n:
            raise ValueError(
                f"x must have one entry per loss curve ({n}), got {len(xs)}."
            )
        for i, (curve, x) in enumerate(zip(curves, xs)):
            if curve.ndim != 1 or x.shape != curve.shape:
                raise ValueError(
                    f"Curve {i}: loss curve and x must be 1-D and of equal length, "
                    f"got shapes {curve.shape} and {x.shape}."
                )
        labels = self.labels
        if labels is not None:
            if isinstance(labels, str) or len(labels) != n:
                raise ValueError(
                    f"labels must be a list with one label per curve ({n}), "
                    f"got {labels!r}."
                )
            labels = [str(label) for label in labels]
        validations = self.validation_loss_curves
        if validations is not None:
            if len(validations) != n:
                raise ValueError(
                    "validation_loss_curves must have one entry (or None) per "
                    f"loss curve ({n}), got {len(validations)}."
                )
            validations = [
                None if v is None else np.asarray(v, dtype=float) for v in validations
            ]
            for i, (v, x) in enumerate(zip(validations, xs)):
                if v is not None and (v.ndim != 1 or v.size > x.size):
                    raise ValueError(
                        f"Curve {i}: the validation curve must be 1-D and no "
                        f"longer than x ({x.size}), got shape {v.shape}."
                    )
        return curves, xs, labels, validations

    def plot(self, ax=None, *, x_label=None, log_scale="auto", **kwargs):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.

        x_label : str, default=None
            Label of the x-axis; None uses the display's ``x_label``.

        log_scale : bool or {"auto", "x", "y", "both"}, default="auto"
            Which axes are logarithmic: ``"x"``, ``"y"``, ``"both"`` (same as
            True) or neither (False). ``"auto"`` makes the x-axis logarithmic
            when the curves end more than a factor 10 apart on it (as optimizer
            steps of ``batch_size=1`` and ``'full'`` do) and keeps the y-axis
            linear.

        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.plot`, applied to
            every line. Validation lines take the color of their training line
            and are dashed.

        Returns
        -------
        display : LossCurveDisplay
            The display, with ``figure_``, ``ax_``, ``lines_`` and
            ``validation_lines_`` set.
        """
        plt = import_pyplot(f"{type(self).__name__}.plot")
        if log_scale is True:
            log_scale = "both"
        elif log_scale is False:
            log_scale = "none"
        elif log_scale not in _LOG_SCALES:
            raise ValueError(
                'log_scale must be a bool or one of "auto", "x", "y", "both", '
                f"got {log_scale!r}."
            )
        curves, xs, labels, validations = self._validated_data()
        if ax is None:
            _, ax = plt.subplots()

        lines, validation_lines = [], []
        for i, (curve, x) in enumerate(zip(curves, xs)):
            validation = None if validations is None else validations[i]
            if labels is not None:
                label = labels[i]
                validation_label = f"{label} (validation)"
            else:
                label = None if validation is None else "training"
                validation_label = "validation"
            (line,) = ax.plot(x, curve, **{"label": label, **kwargs})
            lines.append(line)
            if validation is None:
                validation_lines.append(None)
                continue
            validation_kwargs = {
                "label": validation_label,
                **kwargs,
                "color": line.get_color(),
                "linestyle": "--",
            }
            validation_kwargs.pop("ls", None)
            validation_kwargs.pop("c", None)
            x_validation = x[x.size - validation.size :]
            (validation_line,) = ax.plot(x_validation, validation, **validation_kwargs)
            validation_lines.append(validation_line)

        if log_scale == "auto":
            ends = [x[-1] for x in xs if x.size]
            log_x = bool(ends) and min(ends) > 0 and max(ends) / min(ends) > 10
            log_scale = "x" if log_x else "none"
        if log_scale in ("x", "both"):
            ax.set_xscale("log")
        if log_scale in ("y", "both"):
            ax.set_yscale("log")
        ax.set_xlabel(self.x_label if x_label is None else x_label)
        ax.set_ylabel(self.y_label)
        self._draw_legend(ax, validation_lines, key=labels is not None)

        self.ax_ = ax
        self.figure_ = ax.figure
        self.lines_ = lines
        has_validation = any(v is not None for v in validation_lines)
        self.validation_lines_ = validation_lines if has_validation else None
        return self

    @staticmethod
    def _draw_legend(ax, validation_lines, key):
        """Legend of the labeled artists on ``ax``.

        With ``key``, the validation lines keep their labels (for
        ``get_label``) but stay out of the legend, which would otherwise list
        every run twice: a gray solid "training" and dashed "validation" entry
        tell the line styles apart instead. Other labeled artists already on
        ``ax`` stay in the legend.
        """
        from matplotlib.lines import Line2D

        handles, texts = ax.get_legend_handles_labels()
        drawn = [line for line in validation_lines if line is not None]
        if key and drawn:
            kept = [
                (handle, text)
                for handle, text in zip(handles, texts)
                if not any(handle is line for line in drawn)
            ]
            handles = [handle for handle, _ in kept] + [
                Line2D([], [], color="gray", linestyle="-"),
                Line2D([], [], color="gray", linestyle="--"),
            ]
            texts = [text for _, text in kept] + ["training", "validation"]
        if handles:
            ax.legend(handles, texts)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        *,
        x_axis="epochs",
        labels=None,
        ax=None,
        validation=True,
        log_scale="auto",
        **kwargs,
    ):
        """Plot the loss curves of one or several fitted estimators.

        Parameters
        ----------
        estimator : estimator, list of estimators or dict of str to estimator
            Fitted :class:`~skbatchnet.BatchMLPClassifier` or
            :class:`~skbatchnet.BatchMLPRegressor` objects, or Pipelines that
            end in one. A dict gives the label of each estimator as its key.

        x_axis : {"epochs", "steps", "samples"}, default="epochs"
            What the x-axis counts, cumulatively over training: epochs (passes
            over the data), optimizer steps (minibatches), or training samples
            seen. Steps and samples put runs with different batch sizes on a
            fair footing: the same number of epochs is many more steps at
            ``batch_size=1`` than with ``'full'``, but the same samples seen.
            For ``solver='lbfgs'``, "epochs" and "steps" count L-BFGS
            iterations and "samples" raises a ValueError.

        labels : str or list of str, default=None
            Legend entry of each estimator. None describes each estimator by
            its ``batch_size_`` (and the requested ``batch_size`` when that
            differs, such as ``'full'``), adding ``gradient_reduction``,
            ``drop_last`` and ``solver`` when one of the estimators uses a
            value other than the default or the solvers differ. Labels shared
            by several estimators are numbered with the estimator's position.

        ax : matplotlib Axes, default=None
            Axes to draw on; None creates a new figure and axes.

        validation : bool, default=True
            Also draw ``validation_loss_curve_`` (dashed, in the color of the
            training curve) for estimators fitted with ``early_stopping=True``.

        log_scale : bool or {"auto", "x", "y", "both"}, default="auto"
            Logarithmic axes, see :meth:`plot`.

        **kwargs : dict
            Keyword arguments of :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : LossCurveDisplay
            The display, drawn.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If an estimator is not fitted.

        Notes
        -----
        The training curve is ``loss_curve_``: each epoch's estimate of the
        penalized objective. The validation curve is the mean loss on the
        held-out set, without the penalty.

        The "steps" and "samples" axes are the cumulative sums of the
        fitted attributes ``n_steps_per_epoch_`` and ``n_samples_per_epoch_``,
        recorded during training, so they are exact after ``partial_fit``
        calls of different sizes or warm starts. For estimators without them
        (such as scikit-learn's MLP) they are computed from ``t_`` (training
        rows seen), ``batch_size_`` and ``drop_last``: an epoch saw
        ``rows = t_ / len(loss_curve_)`` rows and took ``ceil(rows /
        batch_size_)`` steps (``rows // batch_size_`` with
        ``drop_last=True``, whose dropped rows ``t_`` does not count, or
        ``'merge'``). This is exact for an estimator trained from scratch by
        ``fit``, or by ``partial_fit`` on chunks of one size. After a warm
        start on other data, a change of ``batch_size`` or ``solver``, or
        ``partial_fit`` on chunks of different sizes, it is an approximation
        (a warning is raised when the epochs did not see equal numbers of
        rows).

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from sklearn.datasets import make_regression
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from skbatchnet import BatchMLPRegressor
        >>> from skbatchnet.plotting import LossCurveDisplay
        >>> X, y = make_regression(n_samples=100, n_features=5, random_state=0)
        >>> fits = {
        ...     f"batch_size={b}": make_pipeline(
        ...         StandardScaler(),
        ...         BatchMLPRegressor(batch_size=b, max_iter=10, random_state=0),
        ...     ).fit(X, y / 100)
        ...     for b in (10, 30)
        ... }
        >>> display = LossCurveDisplay.from_estimator(fits, x_axis="steps")
        >>> display.lines_[0].get_xdata()  # 10 steps per epoch
        array([ 10,  20,  30,  40,  50,  60,  70,  80,  90, 100])
        >>> display.lines_[1].get_xdata()  # ceil(100 / 30) = 4 steps per epoch
        array([ 4,  8, 12, 16, 20, 24, 28, 32, 36, 40])
        >>> display.ax_.get_xlabel()
        'Optimizer steps'
        >>> import matplotlib.pyplot as plt
        >>> plt.close(display.figure_)
        """
        import_pyplot(f"{cls.__name__}.from_estimator")
        if x_axis not in _X_AXES:
            raise ValueError(f"x_axis must be one of {_X_AXES}, got {x_axis!r}.")
        estimators, labels = _estimators_and_labels(estimator, labels)
        estimators = [_check_estimator(e) for e in estimators]
        if labels is None:
            labels = _default_labels(estimators)
        xs = [_curve_x(e, x_axis) for e in estimators]
        validations = None
        if validation:
            validations = [
                getattr(e, "validation_loss_curve_", None) for e in estimators
            ]
            if all(v is None for v in validations):
                validations = None
        display = cls(
            loss_curves=[list(e.loss_curve_) for e in estimators],
            x=xs,
            labels=labels,
            validation_loss_curves=validations,
            x_label=_x_label(estimators, x_axis),
        )
        return display.plot(ax=ax, log_scale=log_scale, **kwargs)
