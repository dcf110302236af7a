"""The epoch loop (skbatchnet._training) against exact oracles.

Each test replays or recomputes what training must have done, from the
public core (Network, reduction_coefficients) or from a second fit whose
result is known to be the same, and compares exactly: the bookkeeping of
skipped batches, weighted validation, the penalty's S, the weight average
across interruptions and warm starts.
"""

import contextlib
import os
import warnings

import numpy as np
import pytest
from conftest import (
    intercept_loop_results,
    spy_split,
    use_numpy_epochs,
    without_growth_rule,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

import skbatchnet._base
import skbatchnet._callbacks
import skbatchnet._optimizers
import skbatchnet._training
import skbatchnet.backprop
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet._training import split_validation
from skbatchnet.backprop import Network

RNG = np.random.RandomState(0)
X = RNG.randn(30, 4)
Y_REG = X @ RNG.randn(4) + 0.1 * RNG.randn(30)
Y_CLS = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
SGD = dict(solver="sgd", momentum=0.0, learning_rate_init=0.05, random_state=3)


def _parameters(est):
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_])


def _network(est, loss):
    return Network(est.coefs_, est.intercepts_, activation=est.activation, loss=loss)


def _replay_sgd(network, batches, alpha, total, reduction, lr):
    """Plain SGD by hand, skipping batches without weight."""
    for X_b, y_b, w_b in batches:
        if w_b.sum() == 0:
            continue
        _, coef_grads, intercept_grads = network.batch_gradient(
            X_b, y_b, w_b, alpha=alpha, total_weight=total, reduction=reduction
        )
        for p, g in zip(
            network.coefs + network.intercepts, coef_grads + intercept_grads
        ):
            p -= lr * g
    return network


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_zero_weight_batches_are_skipped_and_their_rows_counted(reduction):
    """A batch that carries no weight takes no step (neither a data step nor
    a penalty-only one), and its rows still count as seen in ``t_``."""
    w = np.ones(30)
    w[10:20] = 0.0  # with shuffle=False, batch_size=10: the second batch
    params = dict(hidden_layer_sizes=(5,), batch_size=10, shuffle=False, alpha=0.3)
    est = BatchMLPRegressor(**params, **SGD, gradient_reduction=reduction, max_iter=1)
    init = Network.initialize(
        [4, 5, 1], activation="relu", random_state=SGD["random_state"]
    )
    est.fit(X, Y_REG, sample_weight=w)
    batches = [(X[s : s + 10], Y_REG[s : s + 10], w[s : s + 10]) for s in (0, 10, 20)]
    expected = _replay_sgd(init, batches, 0.3, w.sum(), reduction, 0.05)
    np.testing.assert_allclose(_parameters(est), expected.parameters, rtol=1e-12)
    assert est.t_ == 30
    assert est.n_iter_ == 1


def _fit_without_weighted_batch(**params):
    """A fit whose weighted rows are all in the dropped last batch."""
    w = np.zeros(30)
    w[-4:] = 1.0  # batches of 13 rows: the last 4 rows are dropped
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        batch_size=13,
        shuffle=False,
        drop_last=True,
        **params,
        **SGD,
    )
    return est.fit(X, Y_REG, sample_weight=w), w


@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_epoch_without_weighted_batch_reports_the_objective(monkeypatch, numpy_epochs):
    """drop_last=True can drop every weighted row: no step is taken and the
    epoch's loss is the objective E at the unchanged weights, not 0."""
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    est, w = _fit_without_weighted_batch(alpha=0.2, max_iter=1)
    objective = _network(est, "squared_error").objective(
        X, Y_REG.reshape(-1, 1), w, alpha=0.2
    )
    assert est.loss_curve_ == [pytest.approx(objective, rel=1e-12)]
    assert est.loss_ > 0


def test_validation_score_and_loss_use_the_sample_weights(monkeypatch):
    parts = spy_split(monkeypatch)
    w = np.where(RNG.rand(30) < 0.5, 0.2, 5.0)
    est = BatchMLPClassifier(
        hidden_layer_sizes=(5,),
        early_stopping=True,
        validation_fraction=0.4,
        max_iter=1,
        **SGD,
    ).fit(X, Y_CLS, sample_weight=w)
    X_val, _, y_val, w_val = parts["val"]
    # One epoch: the best weights restored are the weights scored.
    assert est.validation_scores_ == [est.score(X_val, y_val, sample_weight=w_val)]
    assert est.best_validation_score_ == est.validation_scores_[0]
    losses = _network(est, "binary_log_loss").per_example_loss(X_val, y_val)
    assert est.validation_loss_curve_ == [
        pytest.approx(np.average(losses, weights=w_val), rel=1e-12)
    ]
    # The weights matter here, so an unweighted score could not pass.
    unweighted = np.average(losses)
    assert not np.isclose(unweighted, est.validation_loss_curve_[0], rtol=1e-6)


def test_penalty_share_uses_the_training_part_only(monkeypatch):
    """With early_stopping=True the objective is the training part's: its S
    is the training rows' weight, not the whole data's."""
    parts = spy_split(monkeypatch)
    totals = []
    original = skbatchnet.backprop.Network.gradient

    def gradient(self, *args, **kwargs):
        totals.append(kwargs["total_weight"])
        return original(self, *args, **kwargs)

    use_numpy_epochs(monkeypatch)
    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", gradient)
    w = 1.0 + RNG.rand(30)
    BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        early_stopping=True,
        validation_fraction=0.3,
        alpha=0.5,
        max_iter=2,
        **SGD,
    ).fit(X, Y_REG, sample_weight=w)
    train_weight = float(parts["train"][3].sum())
    assert totals and set(totals) == {train_weight}
    assert train_weight < w.sum()


def test_partial_fit_applies_class_weight():
    """class_weight in partial_fit is the same as multiplying it into the
    sample weights."""
    weights = {0: 3.0, 1: 0.5}
    kw = dict(hidden_layer_sizes=(5,), batch_size=7, **SGD)
    weighted = BatchMLPClassifier(class_weight=weights, **kw)
    by_hand = BatchMLPClassifier(**kw)
    s = np.array([weights[c] for c in Y_CLS])
    for _ in range(2):
        weighted.partial_fit(X, Y_CLS, classes=[0, 1])
        by_hand.partial_fit(X, Y_CLS, sample_weight=s, classes=[0, 1])
    assert np.array_equal(_parameters(weighted), _parameters(by_hand))
    unweighted = BatchMLPClassifier(**kw).partial_fit(X, Y_CLS, classes=[0, 1])
    assert not np.array_equal(_parameters(weighted), _parameters(unweighted))


def test_warm_start_continues_the_weight_average():
    """Plain SGD keeps no optimizer state and shuffle=False draws no order,
    so two epochs and a warm refit of one are three epochs: the average after
    the refit is the average over all three."""
    kw = dict(
        hidden_layer_sizes=(5,),
        batch_size=6,
        shuffle=False,
        average=True,
        tol=0.0,
        n_iter_no_change=100,
        **SGD,
    )
    warm = BatchMLPRegressor(max_iter=2, warm_start=True, **kw).fit(X, Y_REG)
    warm.set_params(max_iter=1).fit(X, Y_REG)
    once = BatchMLPRegressor(max_iter=3, **kw).fit(X, Y_REG)
    np.testing.assert_allclose(_parameters(warm), _parameters(once), rtol=1e-12)


def test_interrupted_epoch_leaves_the_weight_average_of_the_last_epoch(monkeypatch):
    """A KeyboardInterrupt inside epoch 3 keeps the model of epoch 2, and the
    weight average (what coefs_ shows with average=True) is epoch 2's too."""
    kw = dict(hidden_layer_sizes=(5,), batch_size=10, average=True, **SGD)
    # Both fits on the numpy path, which alone is bit for bit comparable.
    use_numpy_epochs(monkeypatch)
    reference = BatchMLPRegressor(max_iter=2, **kw).fit(X, Y_REG)
    original = skbatchnet.backprop.Network.gradient
    calls = {"n": 0}

    def gradient(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # 3 steps per epoch: epoch 3, step 2
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", gradient)
    with pytest.warns(UserWarning, match="interrupted"):
        est = BatchMLPRegressor(max_iter=5, **kw).fit(X, Y_REG)
    assert est.n_iter_ == 2
    assert np.array_equal(_parameters(est), _parameters(reference))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weighted_epoch_loss_weights_each_batch_by_its_weight(reduction):
    """The epoch loss is sum_b W_b E_b / sum_b W_b, where E_b is batch b's
    estimate of the objective at the weights before its step,
    (1 / W_b) sum_{i in b} s_i loss_i + (alpha / 2S) ||W||^2, and W_b the
    batch's total weight. Replayed by hand, so it holds on every supported
    scikit-learn version (whose own MLP weighs batches by row count)."""
    w = 0.2 + 3.0 * RNG.rand(30)
    alpha, size = 0.3, 8  # batches of 8, 8, 8 and 6 rows
    params = dict(hidden_layer_sizes=(5,), batch_size=size, shuffle=False)
    est = BatchMLPRegressor(
        **params, alpha=alpha, gradient_reduction=reduction, max_iter=1, **SGD
    ).fit(X, Y_REG, sample_weight=w)
    net = Network.initialize(
        [4, 5, 1], activation="relu", random_state=SGD["random_state"]
    )
    Y = Y_REG.reshape(-1, 1)
    estimates, weights = [], []
    for start in range(0, 30, size):
        rows = slice(start, start + size)
        data = np.average(net.per_example_loss(X[rows], Y[rows]), weights=w[rows])
        estimates.append(data + 0.5 * alpha * net.penalty() / w.sum())
        weights.append(w[rows].sum())
        _replay_sgd(net, [(X[rows], Y[rows], w[rows])], alpha, w.sum(), reduction, 0.05)
    expected = np.dot(weights, estimates) / np.sum(weights)
    assert est.loss_curve_ == [pytest.approx(expected, rel=1e-12)]
    np.testing.assert_allclose(_parameters(est), net.parameters, rtol=1e-12)
    # Row counts as batch weights (scikit-learn's rule) give another number.
    by_rows = np.dot([8, 8, 8, 6], estimates) / 30
    assert not np.isclose(by_rows, expected, rtol=1e-6)


@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_each_epoch_reports_its_loss_curve_entry(monkeypatch, numpy_epochs):
    """The loss handed to the callbacks after each epoch is the epoch's
    loss_curve_ entry (checked against a hand replay above), on both paths."""
    reported = []
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    monkeypatch.setattr(
        skbatchnet._callbacks.TaskReporter,
        "task",
        lambda self, name, loss: reported.append((name, loss)),
    )
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,), batch_size=8, max_iter=4, **SGD
    ).fit(X, Y_REG, sample_weight=0.5 + RNG.rand(30))
    monkeypatch.undo()
    assert est.n_iter_ == 4
    assert reported == [("epoch", loss) for loss in est.loss_curve_]


# -- the stopping rule, the weight average's start, L-BFGS (mutation testing) --


def _stop_epoch(curve, tol, n_iter_no_change, higher_is_better=False):
    """scikit-learn's stopping rule, written out: the epoch at which more than
    ``n_iter_no_change`` consecutive epochs failed to beat the best value by
    ``tol`` (an epoch equal to the best beats it when ``tol`` is 0), or None."""
    best, count = -np.inf if higher_is_better else np.inf, 0
    for epoch, value in enumerate(curve, start=1):
        if higher_is_better:
            count = count + 1 if value < best + tol else 0
            best = max(best, value)
        else:
            count = count + 1 if value > best - tol else 0
            best = min(best, value)
        if count > n_iter_no_change:
            return epoch
    return None


@pytest.mark.parametrize("tol", [0.0, 1e-3, 0.05])
@pytest.mark.parametrize("n_iter_no_change", [1, 2])
def test_training_loss_stopping_rule(tol, n_iter_no_change):
    # A large rate makes the loss go up and down, so the counter both grows
    # and resets before the rule fires.
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        batch_size=4,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        max_iter=40,
        **dict(SGD, learning_rate_init=0.3),
    ).fit(X, Y_REG)
    stop = _stop_epoch(est.loss_curve_, tol, n_iter_no_change)
    assert stop == est.n_iter_ == len(est.loss_curve_) < 40
    assert est.best_loss_ == min(est.loss_curve_)


def test_equal_loss_counts_as_improvement_when_tol_is_zero():
    # Without any weighted batch no step is taken: every epoch has the same
    # loss. With tol=0 an equal loss is not worse than the best (as in
    # scikit-learn), so training runs all its epochs.
    est, w = _fit_without_weighted_batch(tol=0.0, n_iter_no_change=1, max_iter=5)
    assert len(set(est.loss_curve_)) == 1
    assert est.n_iter_ == 5
    est.set_params(tol=1e-12).fit(X, Y_REG, sample_weight=w)
    assert est.n_iter_ == 3  # epochs 2 and 3 do not improve


class _Recorder(BatchMLPClassifier):
    """Logs the weights at each validation scoring."""

    def _score_output(self, output, y, sample_weight):
        self.__dict__.setdefault("log", []).append(_parameters(self))
        return super()._score_output(output, y, sample_weight)


@pytest.mark.parametrize("tol, n_iter_no_change", [(0.0, 2), (0.05, 1), (0.0, 100)])
def test_validation_stopping_rule_and_best_weights(tol, n_iter_no_change, capsys):
    est = _Recorder(
        hidden_layer_sizes=(5,),
        batch_size=4,
        early_stopping=True,
        validation_fraction=0.4,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        max_iter=15,
        verbose=True,
        **dict(SGD, learning_rate_init=0.01),
    ).fit(X, Y_CLS)
    scores = est.validation_scores_
    stop = _stop_epoch(scores, tol, n_iter_no_change, higher_is_better=True)
    assert est.n_iter_ == len(scores) == (stop or 15)
    # The best weights are those of the first epoch reaching the best score.
    first_best = scores.index(max(scores))
    assert np.array_equal(_parameters(est), est.log[first_best])
    if n_iter_no_change == 100:
        assert scores.count(max(scores)) > 1, "precondition: a tie at the best"
        assert not np.array_equal(est.log[first_best], est.log[-1])
    out = capsys.readouterr().out.splitlines()
    printed = [line for line in out if line.startswith("Validation score: ")]
    assert printed == [f"Validation score: {s:f}" for s in scores]


@pytest.mark.parametrize("average, first", [(True, 0), (1, 0), (3, 2), (7, 6)])
def test_weight_average_starts_at_the_step_that_sees_k_samples(average, first):
    """With one row per step, average=k averages the weights after steps
    k, k+1, ... (True is 1): replayed by hand."""
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        batch_size=1,
        shuffle=False,
        average=average,
        max_iter=1,
        **SGD,
    ).fit(X[:10], Y_REG[:10])
    net = Network.initialize(
        [4, 5, 1], activation="relu", random_state=SGD["random_state"]
    )
    trajectory = []
    for i in range(10):
        rows = slice(i, i + 1)
        _replay_sgd(net, [(X[rows], Y_REG[rows], np.ones(1))], 0.0001, 10, "mean", 0.05)
        trajectory.append(net.parameters.copy())
    expected = np.mean(trajectory[first:], axis=0)
    np.testing.assert_allclose(_parameters(est), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("max_iter", [3, 200])
def test_lbfgs_follows_scipy_on_the_objective(max_iter, weighted, capsys):
    """The oracle: scipy's L-BFGS-B on E and grad E from the public core
    (Network.objective, Network.batch_gradient over all the rows), from the
    same initial weights, with the estimator's limits."""
    import scipy.optimize
    from sklearn.exceptions import ConvergenceWarning

    w = 0.5 + RNG.rand(30) if weighted else None
    params = dict(
        hidden_layer_sizes=(5,), alpha=0.2, max_iter=max_iter, tol=1e-6, verbose=True
    )
    message = (
        r"lbfgs failed to converge after 3 iterations \(status=1\): .+\. "
        r"Increase max_iter or max_fun, or scale the data\.$"
    )
    expected = pytest.warns(ConvergenceWarning, match=message)
    with expected if max_iter == 3 else _no_warning() as record:
        est = BatchMLPRegressor(solver="lbfgs", random_state=3, **params).fit(
            X, Y_REG, sample_weight=w
        )
    if max_iter == 3:
        # Attributed to the estimator's code, not to the L-BFGS run.
        assert os.path.basename(record[0].filename) not in ("_lbfgs.py", "_training.py")
    net = Network.initialize([4, 5, 1], activation="relu", random_state=3)
    Y = Y_REG.reshape(-1, 1)

    def fun(x):
        net.parameters[...] = x
        _, coef_grads, intercept_grads = net.batch_gradient(X, Y, w, alpha=0.2)
        grad = np.concatenate([g.ravel() for g in coef_grads + intercept_grads])
        return net.objective(X, Y, w, alpha=0.2), grad

    curve = []
    result = scipy.optimize.minimize(
        fun,
        net.parameters.copy(),
        method="L-BFGS-B",
        jac=True,
        callback=lambda xk: curve.append(fun(xk)[0]),
        options={"maxiter": max_iter, "maxfun": 15000, "gtol": 1e-6},
    )
    np.testing.assert_allclose(_parameters(est), result.x, rtol=1e-9, atol=1e-12)
    assert est.n_iter_ == result.nit
    assert est.loss_curve_ == pytest.approx(curve, rel=1e-9)
    assert est.loss_ == pytest.approx(result.fun, rel=1e-9)
    assert est.best_loss_ == min(est.loss_curve_ + [est.loss_])
    assert (result.status != 0) == (max_iter == 3)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "Iteration" in ln]
    assert printed == [
        f"Iteration {i}, loss = {loss:.8f}"
        for i, loss in enumerate(est.loss_curve_, start=1)
    ]


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- the early-stopping split, against scikit-learn's train_test_split --------


def _split(n=30, fraction=0.3, stratify=True, sample_weight=None, y=None, seed=7):
    y = (np.arange(n) % 3) if y is None else y
    # Row i of X is (i, i): the parts show which rows went where.
    X_, Y_ = np.repeat(np.arange(n, dtype=float), 2).reshape(n, 2), np.ones((n, 1))
    ours = split_validation(
        X_,
        Y_,
        y,
        sample_weight,
        fraction=fraction,
        rng=np.random.RandomState(seed),
        stratify_by=y if stratify else None,
    )
    return (X_, Y_, y, sample_weight), ours


@pytest.mark.parametrize(
    "labels, fraction, stratified",
    [
        (np.arange(30) % 3, 0.3, True),
        (np.arange(30) % 3, 0.1, True),  # n_val = 3 = n_classes: just enough
        (np.arange(30) % 3, 0.05, False),  # n_val = 2 < 3 classes
        (np.arange(30) % 3, 0.95, False),  # 1 training row < 3 classes
        (np.r_[np.zeros(28, int), 1, 2], 0.3, False),  # a class of one example
        (np.r_[np.zeros(28, int), 1, 1], 0.3, True),  # two are enough
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_split_validation_is_train_test_split(labels, fraction, stratified, weighted):
    """Stratified when every class has two examples and fits on both sides,
    plain random otherwise; the oracle is train_test_split with the same
    seed."""
    # Small weights: a part whose total is below 1 is as valid as any.
    w = 0.001 * (1.0 + np.arange(30.0)) if weighted else None
    (X_, Y_, y, w), (train, val) = _split(fraction=fraction, y=labels, sample_weight=w)
    arrays = [X_, Y_, y] + ([w] if weighted else [])
    expected = train_test_split(
        *arrays,
        random_state=np.random.RandomState(7),
        test_size=fraction,
        stratify=y if stratified else None,
    )
    if not weighted:
        expected += [None, None]
    assert len(train) == len(val) == 4
    for got, want in zip(train + val, expected[0::2] + expected[1::2]):
        if want is None:
            assert got is None
        else:
            assert np.array_equal(got, want)


def test_split_validation_refusals():
    with pytest.raises(ValueError) as info:
        _split(fraction=0)
    assert str(info.value) == (
        "early_stopping=True needs a held-out set, but validation_fraction "
        "is 0. Set validation_fraction to a value in (0, 1), e.g. 0.1."
    )
    with pytest.raises(ValueError) as info:
        _split(n=10, fraction=0.1, stratify=False)  # one held-out row
    assert str(info.value) == (
        "The validation set is too small. Increase validation_fraction or "
        "the size of the data set, or set early_stopping=False."
    )
    _, (_, val) = _split(n=10, fraction=0.2, stratify=False)  # two: enough
    assert val[0].shape[0] == 2
    _, (train, val) = _split(sample_weight=np.ones(30))
    for side, part in [("held-out", val), ("training", train)]:
        # The split does not depend on the weights: zero one side's rows.
        w = np.full(30, 0.01)  # the other side's total is below 1
        w[part[0][:, 0].astype(int)] = 0.0
        with pytest.raises(ValueError) as info:
            _split(sample_weight=w)
        assert str(info.value) == (
            f"With early_stopping=True the {side} part of the data has zero "
            "total sample weight. Give more examples a positive weight, "
            "change validation_fraction or random_state, or set "
            "early_stopping=False."
        )


# -- the warnings of the epoch loop: words, counters, attribution -------------


def _outside_the_loop(record):
    """Each warning is attributed to the estimator's code (the caller of the
    epoch loop), not to the loop or the L-BFGS run that raises it."""
    if hasattr(skbatchnet._training.interrupted, "__wrapped__"):
        # A mutation tool wraps each function of the loop in two more frames,
        # which moves every stacklevel; the attribution is checked unwrapped.
        return
    for w in record:
        assert os.path.basename(w.filename) not in ("_training.py", "_lbfgs.py")


# (batch_size, rate, the diverged batch, the rows before it in its epoch)
DIVERGING_RUNS = [("full", 0.5, 1, 0), (9, 0.3, 2, 9)]


@pytest.mark.parametrize("batch_size, rate, batch, before", DIVERGING_RUNS)
@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_divergence_after_a_best_model_warns_and_counts_the_epoch(
    monkeypatch, numpy_epochs, batch_size, rate, batch, before
):
    """With a held-out set and a best model, a divergence ends training with
    a warning that names the epoch and batch, and a nan entry for that epoch
    in every curve."""
    from sklearn.exceptions import ConvergenceWarning

    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    without_growth_rule(monkeypatch)  # the non-finite path
    rng = np.random.RandomState(0)
    X3 = rng.randn(60, 3)
    # Full-batch SGD at this rate on a linear network grows the weights epoch
    # by epoch until the loss overflows.
    est = BatchMLPRegressor(
        hidden_layer_sizes=(8,),
        activation="identity",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=rate,
        batch_size=batch_size,
        n_iter_no_change=1000,
        max_iter=100,
        random_state=0,
        early_stopping=True,
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X3, X3 @ np.array([1.0, 2.0, 3.0]))
    record = [w for w in record if w.category is ConvergenceWarning]
    epoch = est.n_iter_
    assert 1 < epoch < 100
    assert [str(w.message) for w in record] == [
        f"Training diverged: the loss became non-finite in epoch {epoch}, batch "
        f"{batch}. "
        "Training stops there and keeps the weights of the best validation "
        "score; lower learning_rate_init or scale the inputs to train further."
    ]
    _outside_the_loop(record)
    n_train = 54  # 60 rows less the 10% held out
    assert len(est.loss_curve_) == len(est.validation_scores_) == epoch
    assert len(est.validation_loss_curve_) == epoch
    assert np.isnan(est.loss_curve_[-1]) and np.isnan(est.validation_scores_[-1])
    assert np.isnan(est.validation_loss_curve_[-1])
    assert np.isfinite(est.loss_curve_[:-1]).all()
    # The epoch ends at the diverged batch, before its step: the batches
    # before it count, it does not.
    per_epoch = 1 if batch_size == "full" else n_train // batch_size
    assert est.n_steps_per_epoch_ == [per_epoch] * (epoch - 1) + [batch - 1]
    assert est.n_samples_per_epoch_ == [n_train] * (epoch - 1) + [before]
    assert est.t_ == n_train * (epoch - 1) + before


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_interruption_warns_with_the_epochs_kept(monkeypatch, solver):
    calls = []

    def task(self, name, loss):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return False

    monkeypatch.setattr(skbatchnet._callbacks.TaskReporter, "task", task)
    est = BatchMLPRegressor(hidden_layer_sizes=(5,), max_iter=10, **SGD)
    est.set_params(solver=solver)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X, Y_REG)
    record = [w for w in record if w.category is UserWarning]
    assert est.n_iter_ == 2
    assert [str(w.message) for w in record] == [
        "Training interrupted by user; the model is kept as it was after epoch 2."
    ]
    _outside_the_loop(record)


def test_reaching_max_iter_warns_in_scikit_learns_words():
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        BatchMLPRegressor(hidden_layer_sizes=(5,), max_iter=3, **SGD).fit(X, Y_REG)
    record = [w for w in record if w.category is ConvergenceWarning]
    assert [str(w.message) for w in record] == [
        "Stochastic Optimizer: Maximum iterations (3) reached and the "
        "optimization hasn't converged yet."
    ]
    _outside_the_loop(record)


@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_an_epoch_of_total_weight_one_reports_its_batch_estimate(
    monkeypatch, numpy_epochs
):
    """One weighted row of weight 1: the epoch's loss is that batch's estimate
    of E before its step (a total weight of 1 is not "no weight")."""
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    w = np.zeros(30)
    w[3] = 1.0
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        batch_size=10,
        shuffle=False,
        alpha=0.2,
        max_iter=1,
        **SGD,
    ).fit(X, Y_REG, sample_weight=w)
    net = Network.initialize([4, 5, 1], activation="relu", random_state=3)
    Y = Y_REG.reshape(-1, 1)
    expected = net.per_example_loss(X[3:4], Y[3:4])[0] + 0.1 * net.penalty()
    assert est.loss_curve_ == [pytest.approx(expected, rel=1e-12)]


def test_verbose_prints_each_epoch_and_the_stopping_reason(capsys):
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        max_iter=50,
        tol=10.0,
        n_iter_no_change=2,
        verbose=True,
        **SGD,
    ).fit(X, Y_REG)
    lines = capsys.readouterr().out.splitlines()
    # Only epoch 1 improves (on inf) by more than tol; the rule stops after
    # more than 2 epochs without improvement.
    assert est.n_iter_ == 4
    assert lines == [
        f"Iteration {i}, loss = {loss:.8f}"
        for i, loss in enumerate(est.loss_curve_, start=1)
    ] + [
        "Training loss did not improve more than tol=10.000000 for 2 "
        "consecutive epochs. Stopping."
    ]
    BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        max_iter=50,
        tol=10.0,
        n_iter_no_change=1,
        early_stopping=True,
        verbose=True,
        **SGD,
    ).fit(X, Y_REG)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Validation score did not improve more than tol=10.000000 for 1 "
        "consecutive epochs. Stopping."
    )


def test_a_stop_request_ends_training_after_that_epoch(monkeypatch):
    monkeypatch.setattr(
        skbatchnet._callbacks.TaskReporter,
        "task",
        lambda self, name, loss: len(self.estimator.loss_curve_) == 2,
    )
    est = BatchMLPRegressor(hidden_layer_sizes=(5,), max_iter=10, **SGD)
    est.fit(X, Y_REG)
    monkeypatch.undo()
    reference = BatchMLPRegressor(hidden_layer_sizes=(5,), max_iter=2, **SGD)
    reference.fit(X, Y_REG)
    assert est.n_iter_ == 2
    assert est.loss_curve_ == reference.loss_curve_
    assert np.array_equal(_parameters(est), _parameters(reference))


def test_diverged_says_what_where_and_survives_pickling():
    import pickle

    from skbatchnet._training import Diverged

    error = Diverged("weights", 3, 2, 40)
    assert str(error) == (
        "Solver produced non-finite parameter weights. The input data may "
        "contain large values and need to be preprocessed. Training diverged: "
        "the "
        "weights became non-finite in batch 3, after 2 steps. Lower "
        "learning_rate_init or scale the inputs."
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Diverged
    assert (copy.what, copy.batch, copy.steps, copy.seen) == ("weights", 3, 2, 40)
    assert str(copy) == str(error)


def test_only_the_public_progress_fields_are_published():
    from skbatchnet._progress import Progress

    progress = Progress()
    progress.reset_stopping(early_stopping=True)
    assert set(progress.attributes()) == {
        "n_iter_",
        "t_",
        "loss_curve_",
        "best_loss_",
        "validation_scores_",
        "validation_loss_curve_",
        "best_validation_score_",
        "n_steps_per_epoch_",
        "n_samples_per_epoch_",
        "clip_fraction_curve_",
        "batch_size_curve_",
        "noise_scale_curve_",
        "squared_gradient_curve_",
        "gradient_variance_curve_",
    }
    assert progress._no_improvement_count == 0
    assert progress._best_parameters is None


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_weights_that_overflow_in_the_last_step_are_named(
    monkeypatch, numpy_epochs, reduction
):
    """One full batch at a rate that overflows the step: the loss was finite,
    the weights after the step are not, and the message says so."""
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,), batch_size="full", max_iter=3, **SGD
    ).set_params(learning_rate_init=1e308, gradient_reduction=reduction)
    with pytest.raises(ValueError) as info, np.errstate(all="ignore"):
        est.fit(X, 100 * Y_REG)
    tail = ", or use gradient_reduction='mean' instead of 'sum'" * (reduction == "sum")
    assert str(info.value) == (
        "Solver produced non-finite parameter weights. The input data may "
        "contain large values and need to be preprocessed. Training diverged: "
        "the "
        "weights became non-finite in epoch 1, batch 1, at learning rate "
        "1e+308. To fix, lower learning_rate_init, scale the inputs (for "
        f"example with StandardScaler) or the targets{tail}."
    )


def test_adaptive_rate_follows_scikit_learn():
    """learning_rate='adaptive' divides the rate by 5 whenever the loss fails
    to improve for n_iter_no_change + 1 epochs, then counts afresh; the
    oracle is scikit-learn's MLP on the same full-batch problem."""
    from sklearn.neural_network import MLPRegressor

    params = dict(
        hidden_layer_sizes=(5,),
        learning_rate="adaptive",
        tol=0.5,
        n_iter_no_change=2,
        max_iter=60,
        batch_size=30,
        alpha=0.0,
        **SGD,
    )
    ours = BatchMLPRegressor(**params).fit(X, Y_REG)
    theirs = MLPRegressor(**params).fit(X, Y_REG)
    assert ours.n_iter_ == theirs.n_iter_ < 60
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


def test_a_divergence_before_any_best_model_raises_with_early_stopping():
    """A held-out set alone does not save a run that diverges in its first
    epoch: there is no best model to go back to."""
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,), batch_size=10, early_stopping=True, max_iter=3, **SGD
    ).set_params(learning_rate_init=1e308)
    with pytest.raises(ValueError, match="^Solver produced non-finite"):
        with np.errstate(all="ignore"):
            est.fit(X, 100 * Y_REG)


@pytest.mark.parametrize("numpy_epochs", [False, True])
def test_a_divergence_after_one_step_of_an_earlier_call_blames_the_steps(
    monkeypatch, numpy_epochs
):
    """``stepped`` counts the steps of earlier calls too: after a partial_fit
    of one row, a divergence in the first batch of the next call is not
    "before any step"."""
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    est = BatchMLPRegressor(hidden_layer_sizes=(5,), **SGD)
    est.partial_fit(X[:1], Y_REG[:1])
    assert est.t_ == 1
    with pytest.raises(ValueError) as info, np.errstate(all="ignore"):
        est.partial_fit(X * 1e200, Y_REG)
    assert str(info.value) == (
        "Solver produced non-finite parameter weights. The input data may "
        "contain large values and need to be preprocessed. Training diverged: "
        "the "
        "loss became non-finite in epoch 2, batch 1, at learning rate 0.05. To "
        "fix, lower learning_rate_init, scale the inputs (for example with "
        "StandardScaler) or the targets."
    )


def _early_stopping_fit_whose_weights_overflow_in_epoch_2(monkeypatch, compiled):
    """A fit with a held-out set whose weights become non-finite after the
    last step of epoch 2 (the loss of every step being finite)."""
    params = dict(
        hidden_layer_sizes=(5,),
        batch_size=8,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=5,
        max_iter=4,
        **SGD,
    )
    calls = {"epochs": 0, "steps": 0}
    if compiled:
        from skbatchnet._codes import Status

        def after(self, result):
            calls["epochs"] += 1
            if calls["epochs"] == 2:
                self.network.parameters[0] = np.inf
                return result._replace(
                    status=Status.NONFINITE_WEIGHTS, batch=len(self.plan.bounds)
                )
            return result

        intercept_loop_results(monkeypatch, after)
    else:
        use_numpy_epochs(monkeypatch)
        original = skbatchnet._optimizers.SGD.step
        steps_per_epoch = -(-24 // 8)  # 24 training rows of 30

        def step(self, params, grads):
            original(self, params, grads)
            calls["steps"] += 1
            if calls["steps"] == 2 * steps_per_epoch:
                params[0][0] = np.inf

        monkeypatch.setattr(skbatchnet._optimizers.SGD, "step", step)
    with pytest.warns(ConvergenceWarning, match="weights became non-finite in epoch 2"):
        return BatchMLPRegressor(**params).fit(X, Y_REG)


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_weights_diverging_after_a_best_model_count_the_rows_of_that_epoch(
    monkeypatch, compiled
):
    # The diverged epoch's steps and rows count in t_ and the per-epoch
    # records, as they do for a loss that diverges mid-epoch.
    est = _early_stopping_fit_whose_weights_overflow_in_epoch_2(monkeypatch, compiled)
    assert est.n_iter_ == 2 and np.isnan(est.loss_curve_[-1])
    assert est.n_samples_per_epoch_ == [24, 24]
    assert est.n_steps_per_epoch_ == [3, 3]
    assert est.t_ == 48
    assert all(np.isfinite(c).all() for c in est.coefs_)
