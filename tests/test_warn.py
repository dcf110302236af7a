"""Every warning names the line that called into the library (skbatchnet/_warn.py).

However deep the warning is raised (each solver's loop, a Pipeline, a
GridSearchCV), its filename is this file and its line number the line of
the call: the expected line is read off this file's own frame, never from
the package.
"""

import inspect
import os
import warnings

import numpy as np
import pytest
from conftest import make_data
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbatchnet._callbacks
import skbatchnet._extension
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet._compiled import CompiledEpochs

X, Y_REG, Y_CLS = make_data(n=60, labels="balanced")
SMALL = dict(hidden_layer_sizes=(5,), random_state=0)
MAX_ITER = dict(max_iter=2, **SMALL)  # stops short: a ConvergenceWarning

# The digits at batch size 1, momentum 0.9 and rate 0.01: the loss runs away
# (skbatchnet's divergence-by-growth rule; see tests/test_growth.py).
_digits = load_digits()
X_DIGITS = StandardScaler().fit_transform(_digits.data[:600])
Y_DIGITS = _digits.target[:600]
RUNAWAY = dict(solver="sgd", batch_size=1, learning_rate_init=0.01, max_iter=12)
RUNAWAY.update(random_state=0, hidden_layer_sizes=(64,))


def _next_line():
    """The line after the caller's current one."""
    return inspect.currentframe().f_back.f_lineno + 1


def _assert_names_the_line(record, category, words, line):
    found = [
        w
        for w in record
        if issubclass(w.category, category) and words in str(w.message)
    ]
    assert found, [str(w.message) for w in record]
    for w in found:
        assert os.path.abspath(w.filename) == os.path.abspath(__file__), w.filename
        assert w.lineno == line, (w.lineno, line, str(w.message))


# -- each solver, fit -----------------------------------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_max_iter_warning_of_a_stochastic_fit(solver):
    est = BatchMLPRegressor(solver=solver, **MAX_ITER)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.fit(X, Y_REG)
    _assert_names_the_line(record, ConvergenceWarning, "Maximum iterations", line)


def test_lbfgs_warning():
    est = BatchMLPClassifier(solver="lbfgs", **MAX_ITER)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.fit(X, Y_CLS)
    _assert_names_the_line(record, ConvergenceWarning, "lbfgs failed", line)


def test_early_stopping_split_warning():
    # One member of class 2: the multiclass split cannot be stratified.
    y = np.r_[np.arange(59) % 2, 2]
    est = BatchMLPClassifier(early_stopping=True, **MAX_ITER)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.fit(X, y)
    _assert_names_the_line(record, UserWarning, "cannot be stratified", line)


def test_early_stopping_divergence_warning():
    est = BatchMLPClassifier(early_stopping=True, n_iter_no_change=100, **RUNAWAY)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.fit(X_DIGITS, Y_DIGITS)
    _assert_names_the_line(record, ConvergenceWarning, "Training diverged", line)


# -- partial_fit ---------------------------------------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_interruption_warning_of_partial_fit(monkeypatch, solver):
    def task(self, name, loss):
        raise KeyboardInterrupt  # as a callback would, after the epoch

    monkeypatch.setattr(skbatchnet._callbacks.TaskReporter, "task", task)
    est = BatchMLPRegressor(solver=solver, **SMALL)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.partial_fit(X, Y_REG)
    _assert_names_the_line(record, UserWarning, "interrupted", line)


def test_growth_warning_of_partial_fit():
    # The first call's epoch is the yardstick; a later call's loss past the
    # rule is only warned of.
    est = BatchMLPClassifier(**RUNAWAY)
    classes = np.arange(10)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(RUNAWAY["max_iter"]):
            line = _next_line()
            est.partial_fit(X_DIGITS, Y_DIGITS, classes=classes)
            if record:
                break
    _assert_names_the_line(record, RuntimeWarning, "the training loss grew", line)


# -- through scikit-learn's meta-estimators -------------------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_a_fit_inside_a_pipeline(solver):
    pipe = make_pipeline(StandardScaler(), BatchMLPRegressor(solver=solver, **MAX_ITER))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        pipe.fit(X, Y_REG)
    _assert_names_the_line(record, ConvergenceWarning, "", line)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_fits_inside_a_grid_search(solver):
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), BatchMLPClassifier(solver=solver, **MAX_ITER)),
        {"batchmlpclassifier__alpha": [1e-4, 1e-2]},
        cv=2,
        n_jobs=1,
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        grid.fit(X, Y_CLS)
    _assert_names_the_line(record, ConvergenceWarning, "", line)
    # Every fit warned: four in the search, one refit.
    assert sum(issubclass(w.category, ConvergenceWarning) for w in record) == 5


# -- the tools -----------------------------------------------------------------


def test_loss_curve_display_warning():
    plotting = pytest.importorskip("skbatchnet.plotting")
    pytest.importorskip("matplotlib")
    est = BatchMLPRegressor(solver="sgd", batch_size=7, **SMALL)
    est.partial_fit(X[:25], Y_REG[:25]).partial_fit(X, Y_REG)
    est.__dict__.pop("n_samples_per_epoch_")  # as a scikit-learn MLP: no counts
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        plotting.LossCurveDisplay.from_estimator(est, x_axis="samples")
    _assert_names_the_line(record, UserWarning, "did not all see the same", line)


def test_extension_not_built_warning(monkeypatch):
    monkeypatch.setattr(skbatchnet._extension, "_epoch", None)
    monkeypatch.setattr(skbatchnet._extension, "_warned", [])
    monkeypatch.setattr(CompiledEpochs, "__init__", lambda *args: None)
    est = BatchMLPRegressor(solver="sgd", **MAX_ITER)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = _next_line()
        est.fit(X, Y_REG)
    _assert_names_the_line(record, RuntimeWarning, "not built", line)
