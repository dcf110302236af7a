"""Weight averaging against a running mean of the weights computed by hand."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.backprop import Network

rng = np.random.RandomState(0)
X = rng.randn(40, 5)
y_reg = X @ rng.randn(5) + 0.3 * rng.randn(40)
y_clf = (X[:, 0] + X[:, 1] > 0).astype(int)

KW = dict(hidden_layer_sizes=(6,), batch_size="full", shuffle=False, random_state=0)


def _trajectory(est, X, y, steps, **fit_kw):
    """Weights after each of ``steps`` full-batch steps (one per partial_fit)."""
    weights = []
    for _ in range(steps):
        est.partial_fit(X, y, **fit_kw)
        weights.append(
            np.concatenate([p.ravel() for p in est.coefs_ + est.intercepts_])
        )
    return np.array(weights)


def _flat(est):
    return np.concatenate([p.ravel() for p in est.coefs_ + est.intercepts_])


def _predict_with(est, flat):
    net = Network(est.coefs_, est.intercepts_, activation=est.activation, loss=est.loss)
    net.parameters[...] = flat
    return net.forward(X).ravel()


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("average, first", [(True, 0), (1, 0), (81, 2), (200, 4)])
def test_average_is_the_running_mean_of_the_weights(solver, average, first):
    """``average=k`` averages the weights after every step from the one at
    which k samples (here 40 per step) have been seen."""
    plain = BatchMLPRegressor(solver=solver, **KW)
    raw = _trajectory(plain, X, y_reg, 6)
    averaged = BatchMLPRegressor(solver=solver, average=average, **KW)
    for _ in range(6):
        averaged.partial_fit(X, y_reg)
    expected = raw[first:].mean(axis=0)
    flat = np.concatenate([p.ravel() for p in averaged.coefs_ + averaged.intercepts_])
    assert_allclose(flat, expected, rtol=1e-12, atol=1e-15)
    assert_allclose(averaged.predict(X), _predict_with(averaged, expected), rtol=1e-12)
    # Training itself follows the raw weights, untouched by the averaging.
    assert averaged.loss_curve_ == plain.loss_curve_


def test_average_before_start_is_the_raw_weights():
    plain = BatchMLPRegressor(solver="sgd", **KW).fit(X, y_reg)
    late = BatchMLPRegressor(solver="sgd", average=10**9, **KW).fit(X, y_reg)
    for a, b in zip(plain.coefs_ + plain.intercepts_, late.coefs_ + late.intercepts_):
        assert_allclose(a, b, rtol=0)


def test_average_survives_pickling_and_warm_start():
    kw = dict(KW, solver="adam", average=True, shuffle=True, batch_size=8, max_iter=3)
    straight = BatchMLPClassifier(**kw)
    for _ in range(4):
        straight.partial_fit(X, y_clf, classes=[0, 1])
    resumed = BatchMLPClassifier(**kw)
    for _ in range(2):
        resumed.partial_fit(X, y_clf, classes=[0, 1])
    resumed = pickle.loads(pickle.dumps(resumed))
    for _ in range(2):
        resumed.partial_fit(X, y_clf)
    for a, b in zip(straight.coefs_, resumed.coefs_):
        assert_allclose(a, b, rtol=0)

    # warm_start fits keep averaging over the new fit's steps: two fits of two
    # full-batch steps average the weights after each of the four steps.
    # Plain SGD (momentum=0) keeps no optimizer state, so four warm fits of
    # one step each give the same raw trajectory.
    sgd = dict(KW, solver="sgd", momentum=0.0, warm_start=True)
    warm = BatchMLPRegressor(**sgd, average=True, max_iter=2)
    warm.fit(X, y_reg)
    warm.fit(X, y_reg)
    plain = BatchMLPRegressor(**sgd, max_iter=1)
    raw = np.array([_flat(plain.fit(X, y_reg)) for _ in range(4)])
    assert_allclose(_flat(warm), raw.mean(axis=0), rtol=1e-12, atol=1e-15)
    assert not np.allclose(_flat(warm), raw[2:].mean(axis=0))  # not this fit's only


def test_average_off_drops_the_average():
    est = BatchMLPRegressor(solver="sgd", average=True, warm_start=True, **KW)
    est.set_params(max_iter=3).fit(X, y_reg)
    est.set_params(average=False).fit(X, y_reg)
    plain = BatchMLPRegressor(solver="sgd", **KW, max_iter=3, warm_start=True)
    plain.fit(X, y_reg)
    plain.fit(X, y_reg)
    # Turning averaging off resumes from the raw weights, not the average.
    for a, b in zip(est.coefs_, plain.coefs_):
        assert_allclose(a, b, rtol=1e-12)
