"""Bad inputs give a ValueError/TypeError that names the problem."""

import numpy as np
import pytest
from conftest import pickled_state

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

SMALL = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
RNG = np.random.RandomState(0)
X = RNG.randn(20, 4)
Y_REG = X[:, 0] + 0.5 * X[:, 1]
Y_CLS = np.arange(20) % 3
ZERO_WEIGHT = r"(?i)sample.weight.*(sums to 0|non-zero)"


def _with(value, where=(0, 0), data=X):
    bad = data.astype(float).copy()
    bad[where] = value
    return bad


ESTIMATORS = [
    pytest.param(BatchMLPRegressor, Y_REG, id="regressor"),
    pytest.param(BatchMLPClassifier, Y_CLS, id="classifier"),
]


@pytest.mark.parametrize("Est, y", ESTIMATORS)
@pytest.mark.parametrize(
    "X_bad, match",
    [
        (_with(np.nan), "NaN"),
        (_with(np.inf), "infinity"),
        (_with(-np.inf, (3, 2)), "infinity"),
        (np.empty((0, 4)), "0 sample"),
        (X[:, 0], "Expected 2D array"),
        (np.array([["a", "b", "c", "d"]] * 20), "string"),
        (np.where(X > 0, "1.5", "x").astype(object), "string"),
    ],
    ids=["nan", "inf", "-inf", "empty", "1d", "strings", "object-strings"],
)
def test_bad_X_at_fit(Est, y, X_bad, match):
    y = y[: len(X_bad)] if X_bad.ndim == 2 else y
    with pytest.raises(ValueError, match=match):
        Est(**SMALL).fit(X_bad, y)


@pytest.mark.parametrize("Est, y", ESTIMATORS)
def test_bad_X_at_predict(Est, y):
    est = Est(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features.*expecting 4"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        est.predict(_with(np.nan))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.predict(X[0])
    if Est is BatchMLPClassifier:
        with pytest.raises(ValueError, match="X has 5 features"):
            est.predict_proba(np.hstack([X, X[:, :1]]))
        with pytest.raises(ValueError, match="X has 3 features"):
            est.predict_log_proba(X[:, :3])


def test_nan_in_regression_target():
    y = Y_REG.copy()
    y[5] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        BatchMLPRegressor(**SMALL).fit(X, y)
    y[5] = np.inf
    with pytest.raises(ValueError, match="y contains infinity"):
        BatchMLPRegressor(**SMALL).fit(X, y)


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        (np.r_[-1.0, np.ones(19)], "non-negative"),
        (np.zeros(20), ZERO_WEIGHT),
        (np.ones(19), "sample_weight"),
        (np.r_[np.nan, np.ones(19)], "sample_weight contains NaN"),
    ],
    ids=["negative", "all-zero", "wrong-length", "nan"],
)
@pytest.mark.parametrize("Est, y", ESTIMATORS)
def test_bad_sample_weight(Est, y, sample_weight, match):
    with pytest.raises(ValueError, match=match):
        Est(**SMALL).fit(X, y, sample_weight=sample_weight)


def test_single_class():
    # As in scikit-learn, one class is fitted and predicted.
    for y in (np.zeros(20, dtype=int), np.array(["a"] * 20)):
        assert (BatchMLPClassifier(**SMALL).fit(X, y).predict(X) == y).all()


def test_mixed_type_labels():
    # The message must say what is wrong with y, not just that Python could
    # not compare an int with a str.
    y = np.array(["a", 1] * 10, dtype=object)
    with pytest.raises((ValueError, TypeError), match=r"(?i)mix|label|target"):
        BatchMLPClassifier(**SMALL).fit(X, y)
    est = BatchMLPClassifier(solver="sgd", **SMALL)
    with pytest.raises((ValueError, TypeError), match=r"(?i)mix|label|target"):
        est.partial_fit(X, y, classes=np.array(["a", 1], dtype=object))
    assert not hasattr(est, "coefs_")


@pytest.mark.parametrize("Est, y", ESTIMATORS)
@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_layer_sizes": (10.5,)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": ("a",)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (5, -1)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": -3}, "hidden_layer_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": "big"}, "batch_size"),
        ({"gradient_reduction": "median"}, "gradient_reduction"),
        ({"drop_last": "x"}, "drop_last"),
        ({"drop_last": 2}, "drop_last"),
    ],
)
def test_bad_parameters(Est, y, params, match):
    est = Est(**{**SMALL, **params})
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def test_negative_target_with_poisson():
    y = np.abs(Y_REG)
    y[3] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        BatchMLPRegressor(loss="poisson", **SMALL).fit(X, y)
    est = BatchMLPRegressor(loss="poisson", solver="sgd", **SMALL)
    est.partial_fit(X, np.abs(Y_REG))
    before = pickled_state(est)
    with pytest.raises(ValueError, match="poisson.*non-negative"):
        est.partial_fit(X, y)
    assert pickled_state(est) == before


def test_balanced_class_weight_in_partial_fit():
    est = BatchMLPClassifier(solver="sgd", class_weight="balanced", **SMALL)
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        est.partial_fit(X, Y_CLS, classes=[0, 1, 2])
    assert not hasattr(est, "coefs_")
    est.set_params(class_weight=None).partial_fit(X, Y_CLS, classes=[0, 1, 2])
    est.set_params(class_weight="balanced")
    before = pickled_state(est)
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        est.partial_fit(X, Y_CLS)
    assert pickled_state(est) == before
    est.set_params(class_weight={0: 1.0, 1: 2.0, 2: 1.0}).partial_fit(X, Y_CLS)
    assert est.n_iter_ == 2
    # The dict weighs this call exactly as the same weights given per row.
    by_hand = BatchMLPClassifier(solver="sgd", **SMALL)
    by_hand.partial_fit(X, Y_CLS, classes=[0, 1, 2])
    by_hand.partial_fit(X, Y_CLS, sample_weight=np.where(Y_CLS == 1, 2.0, 1.0))
    unweighted = BatchMLPClassifier(solver="sgd", **SMALL)
    unweighted.partial_fit(X, Y_CLS, classes=[0, 1, 2]).partial_fit(X, Y_CLS)
    weights = est.coefs_ + est.intercepts_
    assert all(
        np.array_equal(a, b)
        for a, b in zip(weights, by_hand.coefs_ + by_hand.intercepts_)
    )
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(weights, unweighted.coefs_ + unweighted.intercepts_)
    )


@pytest.mark.parametrize("Est, y", ESTIMATORS)
@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, y: (X[:, :3], y, None), "X has 3 features.*expecting 4"),
        (lambda X, y: (_with(np.nan), y, None), "NaN"),
        (lambda X, y: (X[:0], y[:0], None), "0 sample"),
        (lambda X, y: (X, y, np.r_[-1.0, np.ones(19)]), "non-negative"),
        (lambda X, y: (X, y, np.zeros(20)), ZERO_WEIGHT),
        (lambda X, y: (X, y, np.ones(3)), "sample_weight"),
        (lambda X, y: (X[:, 0], y, None), "Expected 2D array"),
        (lambda X, y: (np.where(X > 0, "a", "b"), y, None), "string"),
    ],
    ids=[
        "n_features",
        "nan",
        "empty",
        "negative-weight",
        "zero-weight",
        "weight-len",
        "1d",
        "strings",
    ],
)
def test_failed_partial_fit_leaves_estimator_unchanged(Est, y, change, match):
    est = Est(solver="adam", **SMALL)
    kw = {"classes": [0, 1, 2]} if Est is BatchMLPClassifier else {}
    est.partial_fit(X, y, **kw).partial_fit(X, y)
    before = pickled_state(est)
    X_bad, y_bad, sample_weight = change(X, y)
    with pytest.raises(ValueError, match=match):
        est.partial_fit(X_bad, y_bad, sample_weight=sample_weight)
    assert pickled_state(est) == before
    assert (est.n_iter_, est.t_) == (2, 40)
