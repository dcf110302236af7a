"""The L-BFGS run (skbatchnet._lbfgs) against exact oracles.

The trajectory itself is checked against scipy's L-BFGS-B on the public core
in test_training.py; these tests check what the run reports along the way.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from skbatchnet import BatchMLPRegressor
from skbatchnet._callbacks import TaskReporter
from skbatchnet._lbfgs import train_lbfgs
from skbatchnet._progress import Progress
from skbatchnet._training import TrainingData
from skbatchnet.backprop import Network

RNG = np.random.RandomState(0)
X = RNG.randn(30, 4)
Y = X @ RNG.randn(4) + 0.1 * RNG.randn(30)


@pytest.mark.parametrize("weighted", [False, True])
def test_each_iteration_reports_the_objective_at_its_weights(monkeypatch, weighted):
    """The loss handed to the callbacks after each iteration is E at the
    weights of that iteration, recomputed from the public core, and is the
    loss_curve_ entry of that iteration."""
    w = 0.5 + RNG.rand(30) if weighted else None
    reported = []

    def task(self, name, loss):
        est = self.estimator
        net = Network(
            [c.copy() for c in est.coefs_],
            [b.copy() for b in est.intercepts_],
            activation=est.activation,
            loss="squared_error",
        )
        reported.append((name, loss, net))
        return False

    monkeypatch.setattr(TaskReporter, "task", task)
    est = BatchMLPRegressor(
        solver="lbfgs", hidden_layer_sizes=(5,), alpha=0.2, max_iter=6, random_state=3
    ).fit(X, Y, sample_weight=w)
    monkeypatch.undo()
    assert [name for name, _, _ in reported] == ["iteration"] * est.n_iter_
    assert est.n_iter_ == 6
    losses = [loss for _, loss, _ in reported]
    assert losses == est.loss_curve_
    expected = [net.objective(X, Y[:, None], w, alpha=0.2) for _, _, net in reported]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def _fit(**params):
    base = dict(solver="lbfgs", hidden_layer_sizes=(5,), alpha=0.2, random_state=3)
    return BatchMLPRegressor(**{**base, **params})


def _same_fit(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_
    assert a.loss_ == b.loss_


def test_batch_size_and_gradient_reduction_do_not_apply():
    """Every evaluation is the 'mean' objective E on all the rows, whatever
    the minibatching parameters say: the fits are bit for bit the same."""
    w = 0.5 + RNG.rand(30)
    mean = _fit(max_iter=8).fit(X, Y, sample_weight=w)
    other = _fit(max_iter=8, gradient_reduction="sum", batch_size=7)
    _same_fit(other.fit(X, Y, sample_weight=w), mean)


def _count_evaluations(monkeypatch, fail_at=None, value=None):
    """Count the evaluations of E (Network.gradient on all the rows) and the
    count at each reported iteration; at call ``fail_at``, raise ``value``
    if it is an exception, else return it as the loss."""
    original, calls, at_report = Network.gradient, [], []

    def gradient(self, *args, **kwargs):
        calls.append(1)
        loss, grad = original(self, *args, **kwargs)
        if len(calls) == fail_at:
            if isinstance(value, BaseException):
                raise value
            loss = value
        return loss, grad

    def task(self, name, loss):
        at_report.append(len(calls))
        return False

    monkeypatch.setattr(Network, "gradient", gradient)
    monkeypatch.setattr(TaskReporter, "task", task)
    return calls, at_report


def test_samples_seen_count_the_evaluations_of_each_iteration(monkeypatch):
    """Each evaluation of E is a pass over the data: an iteration's entry of
    n_samples_per_epoch_ is n times the evaluations since the previous one
    (a line search may evaluate more than once)."""
    calls, at_report = _count_evaluations(monkeypatch)
    est = _fit(max_iter=10).fit(X, Y)
    monkeypatch.undo()
    per_iteration = np.diff([0] + at_report)
    assert est.n_iter_ == len(at_report) == 10
    assert per_iteration.sum() == len(calls)
    assert est.n_samples_per_epoch_ == [30 * int(k) for k in per_iteration]
    assert est.n_steps_per_epoch_ == [1] * 10


def test_a_non_finite_trial_point_is_backed_off_from(monkeypatch):
    """Only the first evaluation (the initial weights) blames the data: a
    non-finite loss at a later trial point of the line search is left to
    L-BFGS, which shortens the step, and the fit goes on."""
    calls, _ = _count_evaluations(monkeypatch, fail_at=2, value=np.inf)
    est = _fit(max_iter=5).fit(X, Y)
    monkeypatch.undo()
    assert len(calls) > 2
    assert est.n_iter_ >= 1
    assert np.isfinite(est.loss_)


def test_a_non_finite_loss_at_the_initial_weights_blames_the_data(monkeypatch):
    _count_evaluations(monkeypatch, fail_at=1, value=np.nan)
    with pytest.raises(ValueError) as info:
        _fit().fit(X, Y)
    assert str(info.value) == (
        "Solver produced non-finite parameter weights. The input data may "
        "contain large values and need to be preprocessed. Training diverged: "
        "the "
        "loss was non-finite at the initial weights, before any step was taken, "
        "so the step size is not the cause: the inputs or the sample weights "
        "overflow (or underflow) the floating-point range. Scale the inputs (for "
        "example with StandardScaler), the targets, and the sample weights to "
        "moderate values."
    )


class _Driver:
    """An L-BFGS driver that returns a solution with a non-finite loss."""

    max_iter = 5

    def __init__(self, loss, x):
        self.loss, self.x = loss, x

    def minimize(self, fun, x0, callback=None):
        fun(x0)
        callback(x0)
        return SimpleNamespace(x=self.x, fun=self.loss, nit=1, status=0, message="")


@pytest.mark.parametrize("where", ["loss", "weights"])
def test_a_non_finite_solution_raises(where):
    """A solution whose loss or weights are not finite is a divergence after
    a step: the message blames the steps' scale, not the data."""
    net = Network.initialize([4, 5, 1], random_state=0)
    x = net.parameters.copy()
    if where == "weights":
        x[3] = np.inf
    driver = _Driver(np.inf if where == "loss" else 1.0, x)
    data = TrainingData(X, Y[:, None], None, 30.0)
    with pytest.raises(ValueError) as info:
        train_lbfgs(
            net,
            data,
            driver,
            Progress(),
            alpha=0.0,
            verbose=0,
            report=lambda loss: False,
        )
    assert str(info.value) == (
        "Solver produced non-finite parameter weights. The input data may "
        "contain large values and need to be preprocessed. Training diverged: "
        "the "
        "loss became non-finite in L-BFGS iteration 1. To fix, scale the inputs "
        "(for example with StandardScaler) or the targets."
    )


def test_an_interruption_warns_with_the_iterations_kept(monkeypatch):
    _count_evaluations(monkeypatch, fail_at=6, value=KeyboardInterrupt())
    with pytest.warns(UserWarning) as record:
        est = _fit(max_iter=50).fit(X, Y)
    monkeypatch.undo()
    assert 0 < est.n_iter_ < 6
    assert [str(w.message) for w in record] == [
        "Training interrupted by user; the model is kept as it was after "
        f"epoch {est.n_iter_}."
    ]


def test_a_stop_request_keeps_the_loss_of_the_last_iteration(monkeypatch):
    """Stopped by a callback, loss_ is the loss that iteration reported."""
    w = 0.5 + RNG.rand(30)
    monkeypatch.setattr(
        TaskReporter,
        "task",
        lambda self, name, loss: len(self.estimator.loss_curve_) >= 4,
    )
    est = _fit(max_iter=50).fit(X, Y, sample_weight=w)
    monkeypatch.undo()
    assert est.n_iter_ == len(est.loss_curve_) == 4
    assert est.loss_ == est.loss_curve_[-1]
