"""LossCurveDisplay: the plotted data is exactly the estimators' curves."""

import doctest
import importlib
import math
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbatchnet
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.batching import Minibatcher

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skbatchnet.plotting import LossCurveDisplay  # noqa: E402

N_SAMPLES = 50
MAX_ITER = 4


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return make_classification(
        n_samples=N_SAMPLES, n_features=5, n_informative=3, random_state=0
    )


def fit_classifier(X, y, **params):
    params = {
        "hidden_layer_sizes": (8,),
        "max_iter": MAX_ITER,
        "random_state": 0,
        **params,
    }
    return BatchMLPClassifier(**params).fit(X, y)


def expected_batch_lengths(n, batch_size, drop_last):
    """The rows of each step of one epoch, worked out by hand."""
    b = n if batch_size == "full" else min(batch_size, n)
    lengths = [b] * (n // b)
    if n % b:
        lengths.append(n % b)
    if len(lengths) > 1 and lengths[-1] < b:
        if drop_last is True:
            lengths.pop()
        elif drop_last == "merge":
            last = lengths.pop()
            lengths[-1] += last
    return lengths


@pytest.mark.parametrize("batch_size", [1, 16, "full"])
@pytest.mark.parametrize("drop_last", [False, True, "merge"])
def test_x_axes_match_batching(data, batch_size, drop_last):
    X, y = data
    est = fit_classifier(X, y, batch_size=batch_size, drop_last=drop_last)
    lengths = expected_batch_lengths(N_SAMPLES, batch_size, drop_last)
    # The hand count agrees with the library's own batching.
    bounds = Minibatcher(batch_size, drop_last=drop_last).bounds(N_SAMPLES)
    assert [stop - start for start, stop in bounds] == lengths
    if batch_size == 16:
        assert len(lengths) == {False: 4, True: 3, "merge": 3}[drop_last]

    epochs = np.arange(1, len(est.loss_curve_) + 1)
    expected = {
        "epochs": epochs,
        "steps": epochs * len(lengths),
        "samples": epochs * sum(lengths),
    }
    for x_axis, x in expected.items():
        display = LossCurveDisplay.from_estimator(est, x_axis=x_axis)
        assert len(display.lines_) == 1
        np.testing.assert_array_equal(display.lines_[0].get_xdata(), x)
        np.testing.assert_array_equal(display.lines_[0].get_ydata(), est.loss_curve_)
        assert display.validation_lines_ is None
        assert display.ax_.get_ylabel() == "Loss"
        plt.close(display.figure_)


def test_x_labels(data):
    X, y = data
    est = fit_classifier(X, y, batch_size=16)
    labels = {"epochs": "Epochs", "steps": "Optimizer steps", "samples": "Samples seen"}
    for x_axis, label in labels.items():
        display = LossCurveDisplay.from_estimator(est, x_axis=x_axis)
        assert display.ax_.get_xlabel() == label


def test_multiple_estimators_share_one_axes(data):
    X, y = data
    ests = [fit_classifier(X, y, batch_size=b) for b in (1, 16, "full")]
    display = LossCurveDisplay.from_estimator(ests, x_axis="steps")
    assert len(display.lines_) == 3
    assert all(line.axes is display.ax_ for line in display.lines_)
    for est, line, steps in zip(ests, display.lines_, (50, 4, 1)):
        epochs = np.arange(1, len(est.loss_curve_) + 1)
        np.testing.assert_array_equal(line.get_xdata(), epochs * steps)
        np.testing.assert_array_equal(line.get_ydata(), est.loss_curve_)
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend == ["batch_size=1", "batch_size=16", "batch_size=50 ('full')"]
    # 50 steps per epoch against 1: the x-axis turns logarithmic.
    assert display.ax_.get_xscale() == "log"
    assert display.ax_.get_yscale() == "linear"
    colors = {line.get_color() for line in display.lines_}
    assert len(colors) == 3


def test_default_labels_show_what_differs(data):
    X, y = data
    ests = [
        fit_classifier(X, y, batch_size=16, gradient_reduction="sum"),
        fit_classifier(X, y, batch_size=16, drop_last="merge"),
        fit_classifier(X, y, batch_size=16, learning_rate_init=0.01),
        fit_classifier(X, y, batch_size=16, learning_rate_init=0.1),
        fit_classifier(X, y, batch_size=200),
    ]
    display = LossCurveDisplay.from_estimator(ests)
    assert [line.get_label() for line in display.lines_] == [
        "batch_size=16, gradient_reduction='sum', drop_last=False",
        "batch_size=16, gradient_reduction='mean', drop_last='merge'",
        "batch_size=16, gradient_reduction='mean', drop_last=False [2]",
        "batch_size=16, gradient_reduction='mean', drop_last=False [3]",
        "batch_size=50 (200), gradient_reduction='mean', drop_last=False",
    ]
    # Defaults are left out; a single estimator still names its batch size.
    display = LossCurveDisplay.from_estimator(ests[2])
    assert display.lines_[0].get_label() == "batch_size=16"
    display = LossCurveDisplay.from_estimator(ests[0])
    assert display.lines_[0].get_label() == ("batch_size=16, gradient_reduction='sum'")
    sgd = fit_classifier(X, y, batch_size=16, solver="sgd")
    display = LossCurveDisplay.from_estimator([sgd, ests[2]])
    assert [line.get_label() for line in display.lines_] == [
        "solver='sgd', batch_size=16",
        "solver='adam', batch_size=16",
    ]


def test_labels_argument_and_dict(data):
    X, y = data
    a = fit_classifier(X, y, batch_size=8)
    b = fit_classifier(X, y, batch_size=32)
    display = LossCurveDisplay.from_estimator([a, b], labels=["small", "large"])
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend == ["small", "large"]

    display = LossCurveDisplay.from_estimator({"A": a, "B": b}, x_axis="samples")
    legend = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert legend == ["A", "B"]
    np.testing.assert_array_equal(display.lines_[1].get_ydata(), b.loss_curve_)

    display = LossCurveDisplay.from_estimator(a, labels="only")
    assert display.lines_[0].get_label() == "only"

    with pytest.raises(ValueError, match="one label per estimator"):
        LossCurveDisplay.from_estimator([a, b], labels=["one"])
    with pytest.raises(ValueError, match="not both"):
        LossCurveDisplay.from_estimator({"A": a}, labels=["x"])
    with pytest.raises(ValueError, match="empty"):
        LossCurveDisplay.from_estimator([])


def test_validation_lines_with_early_stopping(data):
    X, y = data
    est = fit_classifier(
        X, y, batch_size=8, early_stopping=True, validation_fraction=0.2, max_iter=6
    )
    plain = fit_classifier(X, y, batch_size=8)
    display = LossCurveDisplay.from_estimator([est, plain], x_axis="samples")
    n_train = N_SAMPLES - math.ceil(0.2 * N_SAMPLES)
    epochs = np.arange(1, len(est.loss_curve_) + 1)
    train, validation = display.lines_[0], display.validation_lines_[0]
    np.testing.assert_array_equal(train.get_xdata(), epochs * n_train)
    np.testing.assert_array_equal(validation.get_xdata(), epochs * n_train)
    np.testing.assert_array_equal(validation.get_ydata(), est.validation_loss_curve_)
    assert validation.get_color() == train.get_color()
    assert validation.get_linestyle() == "--"
    assert display.validation_lines_[1] is None
    assert validation.get_label() == "batch_size=8 [0] (validation)"
    # The legend lists each run once, then a key to the line styles.
    legend = display.ax_.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["batch_size=8 [0]", "batch_size=8 [1]", "training", "validation"]
    # legend_handles is called legendHandles before matplotlib 3.7.
    handles = getattr(legend, "legend_handles", None) or legend.legendHandles
    styles = [h.get_linestyle() for h in handles]
    assert styles == ["-", "-", "-", "--"]

    no_validation = LossCurveDisplay.from_estimator(est, validation=False)
    assert no_validation.validation_lines_ is None
    assert len(no_validation.ax_.get_lines()) == 1


def test_other_labeled_artists_stay_in_the_legend(data):
    X, y = data
    est = fit_classifier(X, y, batch_size=8, early_stopping=True, max_iter=3)
    fig, ax = plt.subplots()
    ax.axhline(0.5, color="k", label="target")
    display = LossCurveDisplay.from_estimator(est, ax=ax, labels="run")
    texts = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert texts == ["target", "run", "training", "validation"]


def test_validation_curve_shorter_than_training_is_aligned_to_the_end(data):
    # A warm start that switches early stopping on keeps loss_curve_ but
    # starts validation_loss_curve_ afresh.
    X, y = data
    est = fit_classifier(X, y, batch_size=10, warm_start=True, max_iter=3)
    est.set_params(early_stopping=True, validation_fraction=0.2).fit(X, y)
    n_val = len(est.validation_loss_curve_)
    assert n_val < len(est.loss_curve_)
    display = LossCurveDisplay.from_estimator(est)
    np.testing.assert_array_equal(
        display.validation_lines_[0].get_xdata(),
        np.arange(1, len(est.loss_curve_) + 1)[-n_val:],
    )


def test_pipeline(data):
    X, y = data
    pipe = make_pipeline(
        StandardScaler(), BatchMLPClassifier(batch_size=16, max_iter=3)
    )
    pipe.fit(X, y)
    display = LossCurveDisplay.from_estimator(pipe, x_axis="steps")
    np.testing.assert_array_equal(display.lines_[0].get_xdata(), [4, 8, 12])
    np.testing.assert_array_equal(display.lines_[0].get_ydata(), pipe[-1].loss_curve_)
    nested = make_pipeline(StandardScaler(), pipe)
    display = LossCurveDisplay.from_estimator(nested, x_axis="steps")
    np.testing.assert_array_equal(display.lines_[0].get_ydata(), pipe[-1].loss_curve_)


def test_regressor(data):
    X, y = make_regression(n_samples=30, n_features=3, random_state=0)
    est = BatchMLPRegressor(batch_size=7, max_iter=3, random_state=0).fit(X, y / 100)
    display = LossCurveDisplay.from_estimator(est, x_axis="steps")
    np.testing.assert_array_equal(display.lines_[0].get_xdata(), [5, 10, 15])
    np.testing.assert_array_equal(display.lines_[0].get_ydata(), est.loss_curve_)


def test_existing_axes_is_used(data):
    X, y = data
    est = fit_classifier(X, y, batch_size=16)
    fig, (ax1, ax2) = plt.subplots(1, 2)
    display = LossCurveDisplay.from_estimator(est, ax=ax2)
    assert display.ax_ is ax2
    assert display.figure_ is fig
    assert display.lines_[0].axes is ax2
    assert not ax1.get_lines()
    assert len(plt.get_fignums()) == 1


def test_lbfgs(data):
    X, y = data
    est = fit_classifier(X, y, solver="lbfgs", max_iter=5)
    iterations = np.arange(1, len(est.loss_curve_) + 1)
    for x_axis in ("epochs", "steps"):
        display = LossCurveDisplay.from_estimator(est, x_axis=x_axis)
        np.testing.assert_array_equal(display.lines_[0].get_xdata(), iterations)
        np.testing.assert_array_equal(display.lines_[0].get_ydata(), est.loss_curve_)
        assert display.ax_.get_xlabel() == "L-BFGS iterations"
        assert display.lines_[0].get_label() == "solver='lbfgs'"
    with pytest.raises(ValueError, match="samples.*lbfgs"):
        LossCurveDisplay.from_estimator(est, x_axis="samples")

    adam = fit_classifier(X, y, batch_size=16)
    display = LossCurveDisplay.from_estimator([adam, est], x_axis="steps")
    assert display.ax_.get_xlabel() == "Optimizer steps (L-BFGS: iterations)"
    with pytest.raises(ValueError, match="lbfgs"):
        LossCurveDisplay.from_estimator([adam, est], x_axis="samples")


def test_not_fitted(data):
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(BatchMLPClassifier())
    X, y = data
    fitted = fit_classifier(X, y)
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator([fitted, BatchMLPRegressor()])
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(
            make_pipeline(StandardScaler(), BatchMLPClassifier())
        )


def test_estimator_without_loss_curve(data):
    X, y = data
    with pytest.raises(TypeError, match="loss_curve_"):
        LossCurveDisplay.from_estimator(LogisticRegression().fit(X, y))


def test_invalid_x_axis(data):
    X, y = data
    with pytest.raises(ValueError, match="x_axis"):
        LossCurveDisplay.from_estimator(fit_classifier(X, y), x_axis="batches")


def test_partial_fit_equal_chunks_are_exact(data):
    X, y = data
    est = BatchMLPClassifier(batch_size=16, random_state=0)
    for _ in range(3):
        est.partial_fit(X[:25], y[:25], classes=np.unique(y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        display = LossCurveDisplay.from_estimator(est, x_axis="steps")
    # ceil(25 / 16) = 2 steps per call.
    np.testing.assert_array_equal(display.lines_[0].get_xdata(), [2, 4, 6])


def test_partial_fit_unequal_chunks_warn(data):
    X, y = data
    est = BatchMLPClassifier(batch_size=16, random_state=0)
    est.partial_fit(X[:25], y[:25], classes=np.unique(y))
    est.partial_fit(X, y)
    # Without recorded counts (as scikit-learn's MLP) the axis is approximate.
    del est.n_steps_per_epoch_, est.n_samples_per_epoch_
    with pytest.warns(UserWarning, match="approximate"):
        display = LossCurveDisplay.from_estimator(est, x_axis="samples")
    np.testing.assert_allclose(display.lines_[0].get_xdata(), [37.5, 75])


def test_constructor_and_plot():
    display = LossCurveDisplay(
        loss_curves=[[3.0, 2.0, 1.0], [2.5, 1.5]],
        x=[[1, 2, 3], [10, 20]],
        validation_loss_curves=[[3.5, 2.5], None],
        x_label="Steps",
    )
    assert not hasattr(display, "lines_")
    fig, ax = plt.subplots()
    assert display.plot(ax, x_label="Custom", log_scale="y", linewidth=3) is display
    assert display.ax_ is ax and display.figure_ is fig
    np.testing.assert_array_equal(display.lines_[1].get_xdata(), [10, 20])
    np.testing.assert_array_equal(display.validation_lines_[0].get_xdata(), [2, 3])
    np.testing.assert_array_equal(display.validation_lines_[0].get_ydata(), [3.5, 2.5])
    assert display.validation_lines_[1] is None
    assert all(line.get_linewidth() == 3 for line in ax.get_lines())
    assert ax.get_xlabel() == "Custom"
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "log")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["training", "validation"]

    display.plot(log_scale=True)
    assert display.ax_ is not ax
    assert (display.ax_.get_xscale(), display.ax_.get_yscale()) == ("log", "log")
    assert display.ax_.get_xlabel() == "Steps"
    display.plot(log_scale=False)
    assert (display.ax_.get_xscale(), display.ax_.get_yscale()) == ("linear",) * 2


def test_plot_validates_data():
    with pytest.raises(ValueError, match="one entry per loss curve"):
        LossCurveDisplay(loss_curves=[[1.0]], x=[]).plot()
    with pytest.raises(ValueError, match="equal length"):
        LossCurveDisplay(loss_curves=[[1.0, 2.0]], x=[[1]]).plot()
    with pytest.raises(ValueError, match="one label per curve"):
        LossCurveDisplay(loss_curves=[[1.0]], x=[[1]], labels=["a", "b"]).plot()
    with pytest.raises(ValueError, match="no longer than x"):
        LossCurveDisplay(
            loss_curves=[[1.0]], x=[[1]], validation_loss_curves=[[1.0, 2.0]]
        ).plot()
    with pytest.raises(ValueError, match="log_scale"):
        LossCurveDisplay(loss_curves=[[1.0]], x=[[1]]).plot(log_scale="z")


def test_validation_line_ignores_aliases_for_its_style():
    display = LossCurveDisplay(
        loss_curves=[[1.0, 0.5]], x=[[1, 2]], validation_loss_curves=[[1.2, 0.7]]
    ).plot(ls=":", c="k")
    assert display.lines_[0].get_linestyle() == ":"
    assert display.validation_lines_[0].get_linestyle() == "--"


def test_missing_matplotlib(monkeypatch, data):
    X, y = data
    est = fit_classifier(X, y)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    # The module itself imports without matplotlib.
    monkeypatch.delitem(sys.modules, "skbatchnet.plotting")
    monkeypatch.delattr(skbatchnet, "plotting", raising=False)
    plotting = importlib.import_module("skbatchnet.plotting")
    hint = r'pip install "skbatchnet\[plot\]"'
    with pytest.raises(
        ImportError, match=rf"from_estimator requires matplotlib.*{hint}"
    ):
        plotting.LossCurveDisplay.from_estimator(est)
    display = plotting.LossCurveDisplay(loss_curves=[[1.0]], x=[[1]])
    with pytest.raises(ImportError, match=rf"LossCurveDisplay.plot requires.*{hint}"):
        display.plot()


def test_docstring_examples():
    module = importlib.import_module("skbatchnet.plotting")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
