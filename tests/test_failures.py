"""Silent failures and wrong answers, and the public core's input checks."""

import re
import warnings

import numpy as np
import pytest
from conftest import use_numpy_epochs

from skbatchnet import BatchMLPRegressor
from skbatchnet._callbacks import TaskReporter
from skbatchnet._optimizers import SGD
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher
from skbatchnet.per_example import per_example_gradient_norms, per_example_gradients
from skbatchnet.plotting import LossCurveDisplay

SMALL = dict(hidden_layer_sizes=(5,), random_state=0)
SKLEARN_NON_FINITE = "Solver produced non-finite parameter weights."


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    return X, X @ np.array([1.0, 2.0, 3.0])


def _params(est):
    return [p.copy() for p in est.coefs_ + est.intercepts_]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# -- 7. L-BFGS on a non-finite objective ----------------------------------------------


def test_lbfgs_on_a_non_finite_objective_raises():
    X, y = _data()
    est = BatchMLPRegressor(solver="lbfgs", **SMALL)
    with pytest.raises(ValueError) as info:
        est.fit(X, y * 1e160)
    assert str(info.value).startswith(SKLEARN_NON_FINITE)
    assert not hasattr(est, "coefs_")


# -- 8. the divergence message names the right cause -----------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("overflow", ["X", "sample_weight"])
def test_non_finite_before_any_step_blames_the_data(solver, overflow):
    X, y = _data()
    kw = (
        {"sample_weight": np.full(len(X), 1e308)} if overflow == "sample_weight" else {}
    )
    est = BatchMLPRegressor(solver=solver, **SMALL)
    with pytest.raises(ValueError) as info:
        est.fit(X * 1e200 if overflow == "X" else X, y, **kw)
    msg = str(info.value)
    assert msg.startswith(SKLEARN_NON_FINITE), msg
    assert "before any step" in msg and "sample weights" in msg, msg
    assert "learning_rate_init" not in msg and "'mean'" not in msg, msg


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_is_suggested_only_when_sum_is_used(reduction):
    X, y = _data()
    est = BatchMLPRegressor(
        solver="sgd", learning_rate_init=1e3, batch_size=10, **SMALL
    ).set_params(gradient_reduction=reduction)
    with pytest.raises(ValueError) as info:
        est.fit(X * 100, y * 100)
    msg = str(info.value)
    assert msg.startswith(SKLEARN_NON_FINITE) and "learning_rate_init" in msg, msg
    assert ("gradient_reduction='mean'" in msg) == (reduction == "sum"), msg


# -- 9. steps and samples seen per epoch --------------------------------------------


def _count_steps(monkeypatch):
    """Record the optimizer steps of every epoch (an SGD step is a step)."""
    steps = []
    step, ends = SGD.step, SGD.iteration_ends

    def counting_step(self, *args):
        steps[-1] += 1
        return step(self, *args)

    def epoch_ends(self, *args):
        steps.append(0)
        return ends(self, *args)

    use_numpy_epochs(monkeypatch)  # SGD.step is the numpy path's
    monkeypatch.setattr(SGD, "step", counting_step)
    monkeypatch.setattr(SGD, "iteration_ends", epoch_ends)
    steps.append(0)
    return steps


def test_partial_fit_chunks_of_different_sizes_plot_exact_axes(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    X, y = _data(n=40)
    steps = _count_steps(monkeypatch)
    est = BatchMLPRegressor(solver="sgd", batch_size=16, **SMALL)
    chunks = [25, 40, 7]
    for n in chunks:
        est.partial_fit(X[:n], y[:n])
    taken = steps[:-1]
    assert taken == [Minibatcher(16).n_steps(n) for n in chunks] == [2, 3, 1]
    assert est.n_steps_per_epoch_ == taken
    assert est.n_samples_per_epoch_ == chunks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_steps = LossCurveDisplay.from_estimator(est, x_axis="steps")
        on_samples = LossCurveDisplay.from_estimator(est, x_axis="samples")
    np.testing.assert_array_equal(on_steps.lines_[0].get_xdata(), np.cumsum(taken))
    np.testing.assert_array_equal(on_samples.lines_[0].get_xdata(), np.cumsum(chunks))
    plt.close("all")


def test_batches_without_weight_are_not_counted_as_steps(monkeypatch):
    X, y = _data(n=40)
    weights = np.r_[np.zeros(10), np.ones(30)]
    steps = _count_steps(monkeypatch)
    est = BatchMLPRegressor(solver="sgd", batch_size=10, shuffle=False, max_iter=3)
    est.set_params(**SMALL).fit(X, y, sample_weight=weights)
    assert est.n_steps_per_epoch_ == steps[:-1] == [3, 3, 3]
    assert est.n_samples_per_epoch_ == [40, 40, 40]


def test_lbfgs_records_one_step_per_iteration():
    X, y = _data()
    est = BatchMLPRegressor(solver="lbfgs", max_iter=7, **SMALL).fit(X, y)
    assert est.n_steps_per_epoch_ == [1] * est.n_iter_ == [1] * len(est.loss_curve_)
    samples = np.array(est.n_samples_per_epoch_)
    assert (samples > 0).all() and (samples % len(X) == 0).all()


# -- 10 and 11. stop requests and interruptions ---------------------------------------


def _reporter(monkeypatch, stop_at=None, interrupt_at=None):
    """Make the callback machinery ask to stop, or raise, at the n-th task."""
    original, calls = TaskReporter.task, []

    def task(self, name, loss):
        calls.append(name)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return original(self, name, loss) or len(calls) == stop_at

    monkeypatch.setattr(TaskReporter, "task", task)


def _fit_catching_interrupts(est, X, y):
    # An interruption that escapes fit would end the whole test session.
    try:
        est.fit(X, y)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped fit; the fit was rolled back")


def _regressor(solver, max_iter=50):
    return BatchMLPRegressor(solver=solver, max_iter=max_iter, batch_size=20, **SMALL)


def test_lbfgs_honours_a_stop_request(monkeypatch):
    X, y = _data()
    _reporter(monkeypatch, stop_at=3)
    est = _regressor("lbfgs").fit(X, y)
    monkeypatch.undo()
    assert est.n_iter_ == len(est.loss_curve_) == 3
    # Oracle: a run of three iterations.
    reference = _regressor("lbfgs", max_iter=3).fit(X, y)
    _assert_same(_params(est), _params(reference))
    assert est.loss_ == reference.loss_


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_interrupt_from_a_callback_keeps_the_completed_epochs(monkeypatch, solver):
    X, y = _data()
    _reporter(monkeypatch, interrupt_at=3)
    est = _regressor(solver)
    with pytest.warns(UserWarning, match="interrupted"):
        _fit_catching_interrupts(est, X, y)
    monkeypatch.undo()
    assert est.n_iter_ == len(est.loss_curve_) == 3
    reference = _regressor(solver, max_iter=3).fit(X, y)
    _assert_same(_params(est), _params(reference))


@pytest.mark.parametrize("at_call", [1, 6])
def test_interrupt_during_lbfgs_keeps_the_last_iteration(monkeypatch, at_call):
    X, y = _data()
    original, calls = Network.gradient, []

    def gradient(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Network, "gradient", gradient)
    est = _regressor("lbfgs")
    with pytest.warns(UserWarning, match="interrupted"):
        _fit_catching_interrupts(est, X, y)
    monkeypatch.undo()
    iterations = est.n_iter_
    assert iterations == len(est.loss_curve_) < at_call
    if iterations == 0:  # interrupted at the first evaluation: the initial weights
        initial = Network.initialize([3, 5, 1], random_state=0)
        _assert_same(_params(est), initial.coefs + initial.intercepts)
    else:
        reference = _regressor("lbfgs", max_iter=iterations).fit(X, y)
        _assert_same(_params(est), _params(reference))


# -- 15. the public core checks its inputs ---------------------------------------


NET = Network.initialize([3, 4, 2], activation="tanh", random_state=0)
X5, Y5 = np.ones((5, 3)), np.ones((5, 2))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Minibatcher(4).bounds(0), r"n_samples.*0"),
        (lambda: Minibatcher(4).bounds(-1), r"n_samples.*-1"),
        (lambda: NET.batch_gradient(X5[:0], Y5[:0]), r"X.*at least one row"),
        (lambda: NET.batch_gradient(X5, Y5[:3]), r"y.*\(5\).*\(3, 2\)"),
        (lambda: NET.batch_gradient(X5[:, :2], Y5), r"X.*3 columns"),
        (lambda: NET.batch_gradient(X5, np.ones(5)), r"y.*2 output"),
        (lambda: per_example_gradient_norms(NET, X5, Y5[:3]), r"y.*\(3, 2\)"),
        (lambda: per_example_gradients(NET, X5, Y5[:3]), r"y.*\(3, 2\)"),
        (
            lambda: NET.batch_gradient(X5, Y5, sample_weight=-np.ones(5)),
            r"sample_weight.*non-negative",
        ),
        (
            lambda: NET.batch_gradient(X5, Y5, sample_weight=np.ones(3)),
            r"sample_weight.*\(3,\)",
        ),
        (
            lambda: Network(
                [np.ones((3, 4)), np.ones((5, 2))], [np.ones(4), np.ones(2)]
            ),
            r"coefs\[1\].*\(5, 2\)",
        ),
        (
            lambda: Network(
                [np.ones((3, 4)), np.ones((4, 2))], [np.ones(3), np.ones(2)]
            ),
            r"intercepts\[0\].*\(4,\)",
        ),
    ],
    ids=[
        "bounds-0",
        "bounds-negative",
        "no-rows",
        "short-y",
        "X-columns",
        "y-outputs",
        "norms-short-y",
        "per-example-short-y",
        "negative-weights",
        "short-weights",
        "coefs-chain",
        "intercept-shape",
    ],
)
def test_core_input_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_all_negative_weights_are_not_called_zero():
    with pytest.raises(ValueError) as info:
        NET.batch_gradient(X5, Y5, sample_weight=-np.ones(5))
    assert not re.search(r"\bis 0\b|sums to 0", str(info.value))
