"""The epoch loop (skbatchnet._training) against exact oracles.

Each test replays or recomputes what training must have done, from the
public core (Network, reduction_coefficients) or from a second fit whose
result is known to be the same, and compares exactly: the bookkeeping of
skipped batches, weighted validation, the penalty's S, the weight average
across interruptions and warm starts.
"""

import numpy as np
import pytest

import skbatchnet._base
import skbatchnet.backprop
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.backprop import Network

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

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


def test_epoch_without_weighted_batch_reports_the_objective():
    """drop_last=True can drop every weighted row: no step is taken and the
    epoch's loss is the objective E at the unchanged weights, not 0."""
    w = np.zeros(30)
    w[-4:] = 1.0  # batches of 13 rows: the last 4 rows are dropped
    est = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        batch_size=13,
        shuffle=False,
        drop_last=True,
        alpha=0.2,
        max_iter=1,
        **SGD,
    ).fit(X, Y_REG, sample_weight=w)
    objective = _network(est, "squared_error").objective(
        X, Y_REG.reshape(-1, 1), w, alpha=0.2
    )
    assert est.loss_curve_ == [pytest.approx(objective, rel=1e-12)]
    assert est.loss_ > 0


def _spy_split(monkeypatch):
    """Record the training and held-out parts of the early-stopping split."""
    original = skbatchnet._base.split_validation
    parts = {}

    def spy(*args, **kwargs):
        parts["train"], parts["val"] = original(*args, **kwargs)
        return parts["train"], parts["val"]

    monkeypatch.setattr(skbatchnet._base, "split_validation", spy)
    return parts


def test_validation_score_and_loss_use_the_sample_weights(monkeypatch):
    parts = _spy_split(monkeypatch)
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
    parts = _spy_split(monkeypatch)
    totals = []
    original = skbatchnet.backprop.Network.gradient

    def gradient(self, *args, **kwargs):
        totals.append(kwargs["total_weight"])
        return original(self, *args, **kwargs)

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
