"""Extreme values: no RuntimeWarning escapes, probabilities stay finite.

Inputs and targets scaled up to the float range, and learning rates big
enough to diverge, either fit or raise a clear error; predictions on huge
finite inputs give finite probabilities; sample weights whose sum overflows
float32 fit on both tiers.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    SMALL,
    TASKS,
    make_data,
    make_task,
    use_numpy_epochs,
)

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", TASKS)
def test_no_runtime_warning_escapes_whatever_the_scale(task, solver):
    X, _, _ = make_data(n=30, labels="balanced")
    Est, y, extra = make_task(task, X)
    escaped = []
    trials = [(s, 1.0) for s in (1e10, 1e50, 1e100, 1e200, 1e300)]
    if Est is BatchMLPRegressor:
        trials += [(1.0, s) for s in (1e10, 1e100, 1e200, 1e300)]
    trials += [(1.0, "huge-lr")]
    for x_scale, y_scale in trials:
        params = dict(solver=solver, max_iter=5, batch_size=10, **extra, **SMALL)
        y_fit = y
        if y_scale == "huge-lr":
            params.update(learning_rate_init=1e20)
        elif y_scale != 1.0:
            y_fit = y * y_scale
        est = Est(**params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                est.fit(X * x_scale, y_fit)
            except ValueError:
                pass
            else:
                est.predict(X * x_scale)
                if Est is BatchMLPClassifier:
                    est.predict_proba(X * x_scale)
        escaped += [
            f"X*{x_scale:g}, y*{y_scale}: {w.message}"
            for w in caught
            if issubclass(w.category, RuntimeWarning)
        ]
    assert not escaped, f"{len(escaped)} RuntimeWarnings escaped, e.g.\n" + "\n".join(
        sorted(set(escaped))[:10]
    )


def _huge_rows(n_features, value=1e200):
    rows = [
        np.full(n_features, value),
        np.full(n_features, -value),
        np.where(np.arange(n_features) % 2, value, -value),
        np.r_[value, np.zeros(n_features - 1)],
        np.r_[np.zeros(n_features - 1), -value],
    ]
    return np.array(rows)


def _check_probabilities(proba, task, n_rows, dtype):
    n_cols = {"binary": 2, "multiclass": 3, "multilabel": 3}[task]
    assert proba.shape == (n_rows, n_cols)
    assert proba.dtype == dtype
    assert np.isfinite(proba).all(), proba
    assert ((proba >= 0) & (proba <= 1)).all(), proba
    if task != "multilabel":
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_huge_inputs_give_finite_probabilities(task, activation, dtype, fmt):
    X, _, _ = make_data(n=60, labels="balanced")
    Est, y, _ = make_task(task, X)
    est = Est(activation=activation, max_iter=30, **SMALL).fit(X.astype(dtype), y)
    X_huge = _huge_rows(4)  # float64: 1e200 does not fit in float32
    if fmt == "csr":
        X_huge = sp.csr_matrix(X_huge)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        proba = est.predict_proba(X_huge)
        labels = est.predict(X_huge)
    assert not [str(w.message) for w in caught if w.category is RuntimeWarning]
    _check_probabilities(proba, task, 5, dtype)
    assert len(labels) == 5


@pytest.mark.parametrize("value", [1e300, np.finfo(np.float64).max])
@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("task", TASKS)
def test_extreme_finite_inputs_at_predict(task, activation, value):
    # Any finite input is accepted by predict; it must not warn, and the
    # classifier's probabilities must stay finite.
    X, _, _ = make_data(n=60, labels="balanced")
    Est, y, extra = make_task(task, X)
    est = Est(activation=activation, max_iter=30, **extra, **SMALL).fit(X, y)
    X_huge = _huge_rows(4, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        pred = est.predict(X_huge)
        proba = est.predict_proba(X_huge) if Est is BatchMLPClassifier else None
    assert not [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(pred) == 5
    if proba is not None:
        _check_probabilities(proba, task, 5, np.float64)


def _parameters(est):
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_])


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("tier", ["compiled", "numpy"])
def test_float32_weights_past_float32_s_range_fit_as_unit_weights(
    tier, solver, early_stopping, monkeypatch
):
    # 120 weights of 1e37 sum to 1.2e39, past float32's 3.4e38. Every total
    # (S, a batch's weight, the loss sums, the held-out part's) is taken in
    # float64, so with the 'mean' reduction and no penalty only the weights'
    # ratios matter: the fit is the fit with unit weights, on either tier.
    X, y_reg, _ = make_data(n=120)
    X = X.astype(np.float32)
    weights = np.full(120, 1e37, np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(weights.sum())
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    params = dict(
        hidden_layer_sizes=(5,), solver=solver, batch_size="full", max_iter=4,
        alpha=0.0, early_stopping=early_stopping, random_state=0,
        validation_fraction=0.5,  # 60 held-out weights: past float32 too
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        weighted = BatchMLPRegressor(**params).fit(X, y_reg, sample_weight=weights)
        unit = BatchMLPRegressor(**params).fit(X, y_reg)
    assert weighted.n_iter_ == unit.n_iter_ == 4
    np.testing.assert_allclose(_parameters(weighted), _parameters(unit), rtol=1e-5)
    np.testing.assert_allclose(weighted.loss_curve_, unit.loss_curve_, rtol=1e-6)
    if early_stopping:
        np.testing.assert_allclose(
            weighted.validation_loss_curve_, unit.validation_loss_curve_, rtol=1e-6
        )
