"""Equivalences that follow from the objective, each checked independently.

E = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2, S = sum_i s_i, with
per-example gradients g_i = grad(loss_i) + (alpha / S) W. A 'mean' step
follows sum_B s_i g_i / sum_B s_i, a 'sum' step follows sum_B s_i g_i.
"""

import numpy as np
import pytest
from conftest import fitted_weights
from numpy.testing import assert_allclose
from sklearn.preprocessing import LabelBinarizer

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.backprop import Network

SEED = 3


def _data(n=30, n_features=4, n_outputs=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]])[:, :n_outputs]
    return X, Y + 0.1 * rng.randn(n, n_outputs)


def _target(kind, Y):
    return np.digitize(Y[:, 0], [-0.3, 0.3]) if kind == "classifier" else Y


def _fit(kind, X, y, sample_weight=None, **params):
    defaults = dict(
        hidden_layer_sizes=(5,),
        activation="tanh",
        solver="sgd",
        momentum=0.0,
        random_state=SEED,
        n_iter_no_change=1000,
    )
    cls = BatchMLPClassifier if kind == "classifier" else BatchMLPRegressor
    return cls(**{**defaults, **params}).fit(X, y, sample_weight=sample_weight)


def _assert_weights_close(a, b, rtol, atol=0.0):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"parameter {i}")


# -- 1. batch_size=1 is per-example SGD -------------------------------------


def _hand_sgd_epoch(X, Y, W1, b1, W2, b2, eta, alpha):
    """One pass of plain per-example SGD on a tanh net with squared error."""
    W1, b1, W2, b2 = (p.copy() for p in (W1, b1, W2, b2))
    n = X.shape[0]
    losses = []
    for x, y in zip(X, Y):
        h = np.tanh(x @ W1 + b1)
        r = h @ W2 + b2 - y  # d loss / d output for 0.5 ||y - yhat||^2
        losses.append(0.5 * r @ r + 0.5 * alpha / n * (np.sum(W1**2) + np.sum(W2**2)))
        d_hidden = (W2 @ r) * (1.0 - h**2)
        gW2 = np.outer(h, r) + (alpha / n) * W2
        gW1 = np.outer(x, d_hidden) + (alpha / n) * W1
        W2 -= eta * gW2
        b2 -= eta * r
        W1 -= eta * gW1
        b1 -= eta * d_hidden
    return [W1, W2, b1, b2], float(np.mean(losses))


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_batch_size_one_is_per_example_sgd(n_outputs):
    X, Y = _data(n=25, n_outputs=n_outputs)
    y = Y.ravel() if n_outputs == 1 else Y
    eta, alpha = 0.05, 0.3
    params = dict(batch_size=1, shuffle=False, alpha=alpha, max_iter=1)
    est = _fit("regressor", X, y, learning_rate_init=eta, **params)
    # The estimator draws its initial weights first from RandomState(SEED).
    shape = [X.shape[1], 5, n_outputs]
    init = Network.initialize(shape, activation="tanh", random_state=SEED)
    (W1, W2), (b1, b2) = init.coefs, init.intercepts
    expected, mean_loss = _hand_sgd_epoch(X, Y, W1, b1, W2, b2, eta, alpha)
    _assert_weights_close(fitted_weights(est), expected, rtol=1e-10, atol=1e-13)
    assert est.n_iter_ == 1 and est.t_ == X.shape[0]
    # The epoch loss averages each step's estimate of E, taken before the step.
    assert est.loss_curve_[0] == pytest.approx(mean_loss, rel=1e-10)


# -- 2. 'sum' at eta / B is 'mean' at eta --------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_sum_with_scaled_rate_equals_mean(kind, alpha, shuffle):
    X, Y = _data(n=60)
    n_batch, eta = 12, 0.05  # 12 divides 60: every batch has B rows
    y = _target(kind, Y)
    common = dict(batch_size=n_batch, shuffle=shuffle, alpha=alpha, max_iter=4)
    common["hidden_layer_sizes"] = (5, 3)
    mean = _fit(kind, X, y, learning_rate_init=eta, **common)
    common["gradient_reduction"] = "sum"
    summed = _fit(kind, X, y, learning_rate_init=eta / n_batch, **common)
    _assert_weights_close(
        fitted_weights(summed), fitted_weights(mean), rtol=1e-9, atol=1e-12
    )
    # The training moved the weights, so the equality is not vacuous.
    init = Network.initialize(
        [X.shape[1], 5, 3, mean.n_outputs_], activation="tanh", random_state=SEED
    )
    assert not np.allclose(mean.coefs_[0], init.coefs[0], rtol=1e-3)
    # The loss reports E whatever the reduction.
    assert_allclose(summed.loss_curve_, mean.loss_curve_, rtol=1e-9)


def test_sum_with_sample_weights_scales_by_batch_weight():
    # With sample weights a 'sum' step is the 'mean' step times the batch's
    # total weight sum_B s_i, which varies from batch to batch, so no single
    # rate eta / c turns 'sum' into 'mean' in general. It does when every
    # batch carries the same total weight c: assert that special case.
    X, Y = _data(n=60)
    rng = np.random.RandomState(1)
    n_batch, c, eta = 12, 9.0, 0.05
    sw = rng.uniform(0.5, 2.0, (60 // n_batch, n_batch))
    sw = (c * sw / sw.sum(axis=1, keepdims=True)).ravel()
    common = dict(batch_size=n_batch, shuffle=False, alpha=0.1, max_iter=3)
    mean = _fit("regressor", X, Y, sw, learning_rate_init=eta, **common)
    common["gradient_reduction"] = "sum"
    summed = _fit("regressor", X, Y, sw, learning_rate_init=eta / c, **common)
    _assert_weights_close(
        fitted_weights(summed), fitted_weights(mean), rtol=1e-9, atol=1e-12
    )
    # Scaling by the row count B instead of the batch weight is not the same.
    wrong = _fit("regressor", X, Y, sw, learning_rate_init=eta / n_batch, **common)
    assert not np.allclose(wrong.coefs_[0], mean.coefs_[0], rtol=1e-6)


# -- 3. one 'full' step is one gradient-descent step on E ----------------------


def _finite_difference_gradient(net, X, Y, sample_weight, alpha, h=1e-6):
    grads = []
    for p in net.coefs + net.intercepts:
        g = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            plus = net.objective(X, Y, sample_weight, alpha=alpha)
            p[idx] = old - h
            minus = net.objective(X, Y, sample_weight, alpha=alpha)
            p[idx] = old
            g[idx] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize(
    "kind, loss",
    [
        ("regressor", "squared_error"),
        ("regressor", "poisson"),
        ("classifier", "log_loss"),
    ],
)
def test_full_batch_step_is_gradient_descent_on_objective(kind, loss):
    X, Y = _data(n=40)
    sw = np.random.RandomState(2).uniform(0.1, 3.0, X.shape[0])
    eta, alpha = 0.1, 0.7
    params = dict(batch_size="full", alpha=alpha, learning_rate_init=eta, max_iter=1)
    if kind == "classifier":
        y = _target(kind, Y)
        targets = LabelBinarizer().fit_transform(y).astype(float)
    else:
        y = targets = np.abs(Y) if loss == "poisson" else Y
        params["loss"] = loss
    est = _fit(kind, X, y, sw, **params)
    shape = [X.shape[1], 5, targets.shape[1]]
    net = Network.initialize(shape, activation="tanh", loss=loss, random_state=SEED)
    before = [p.copy() for p in net.coefs + net.intercepts]
    grad = _finite_difference_gradient(net, X, targets, sw, alpha)
    for new, old, g in zip(fitted_weights(est), before, grad):
        assert_allclose((old - new) / eta, g, rtol=1e-6, atol=1e-8)
    assert est.batch_size_ == X.shape[0]


# -- 4. the penalty has the same meaning at every batch size -------------------


def _penalty_parts(net, X, Y, batch, alpha, total, reduction, sample_weight=None):
    """batch_gradient(alpha) - batch_gradient(0): coefficient and bias parts."""
    w = None if sample_weight is None else sample_weight[batch]
    kw = dict(total_weight=total, reduction=reduction)
    _, *with_alpha = net.batch_gradient(X[batch], Y[batch], w, alpha=alpha, **kw)
    with_alpha = [[g.copy() for g in grads] for grads in with_alpha]
    _, *without = net.batch_gradient(X[batch], Y[batch], w, alpha=0.0, **kw)
    return [[a - b for a, b in zip(*pair)] for pair in zip(with_alpha, without)]


@pytest.mark.parametrize("weighted", [False, True])
def test_penalty_share_is_independent_of_batch_size(weighted):
    n, alpha = 20, 0.9
    X, Y = _data(n=n)
    sw = np.random.RandomState(4).uniform(0.5, 2.0, n) if weighted else None
    S = float(n if sw is None else sw.sum())
    net = Network.initialize([X.shape[1], 6, 3, 2], activation="relu", random_state=0)
    W = net.coefs
    for size in (1, 7, n):  # 7 leaves a short last batch of 6
        batches = [np.arange(s, min(s + size, n)) for s in range(0, n, size)]
        epoch_sum = [np.zeros_like(w) for w in W]
        epoch_mean = [np.zeros_like(w) for w in W]
        for batch in batches:
            # 'mean': each step's penalty part is (alpha / S) W, exactly the
            # penalty part of grad E, whatever the batch size.
            coef_pen, bias_pen = _penalty_parts(net, X, Y, batch, alpha, S, "mean", sw)
            for p, w, acc in zip(coef_pen, W, epoch_mean):
                assert_allclose(p, alpha / S * w, rtol=1e-9, atol=1e-14)
                acc += len(batch) / n * p
            for p in bias_pen:  # biases are not penalized
                assert_allclose(p, 0.0, atol=1e-14)
            # 'sum': the part is (alpha / S) * (batch weight) * W ...
            coef_pen, _ = _penalty_parts(net, X, Y, batch, alpha, S, "sum", sw)
            weight = len(batch) if sw is None else sw[batch].sum()
            for p, w, acc in zip(coef_pen, W, epoch_sum):
                assert_allclose(p, alpha * weight / S * w, rtol=1e-9, atol=1e-14)
                acc += p
        # ... so one epoch of 'sum' steps adds up to alpha * W at any size,
        # and the row-weighted epoch average of 'mean' parts is (alpha / S) W.
        for acc_sum, acc_mean, w in zip(epoch_sum, epoch_mean, W):
            assert_allclose(acc_sum, alpha * w, rtol=1e-9, atol=1e-14)
            assert_allclose(acc_mean, alpha / S * w, rtol=1e-9, atol=1e-14)


# -- 5. integer sample weights are repeated rows --------------------------------


@pytest.mark.parametrize(
    "solver, extra",
    [("sgd", dict(momentum=0.9, learning_rate_init=0.05)), ("adam", {}), ("lbfgs", {})],
)
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_integer_weights_equal_repeated_rows(kind, solver, extra):
    X, Y = _data(n=30)
    counts = np.random.RandomState(5).randint(0, 4, X.shape[0])  # includes 0
    assert (counts == 0).any() and (counts > 1).any()
    y = _target(kind, Y)
    params = dict(solver=solver, batch_size="full", alpha=0.3, max_iter=6, **extra)
    weighted = _fit(kind, X, y, counts.astype(float), **params)
    X_rep, y_rep = np.repeat(X, counts, axis=0), np.repeat(y, counts, axis=0)
    repeated = _fit(kind, X_rep, y_rep, **params)
    _assert_weights_close(
        fitted_weights(weighted), fitted_weights(repeated), rtol=1e-8, atol=1e-12
    )
    assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-8)
    if solver != "lbfgs":
        assert weighted.batch_size_ == X.shape[0]
        assert repeated.batch_size_ == counts.sum()
