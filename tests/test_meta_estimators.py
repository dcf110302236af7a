"""The estimators inside scikit-learn's meta-estimators: calibration,
voting, stacking and multi-output regression, checked against the same
computation done by hand.
"""

import numpy as np
import pytest
from conftest import (
    binary_problem,
    digits_problem,
    regression_problem,
    small_estimator,
)
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("data", ["digits", "binary"])
def test_calibrated_classifier(method, data):
    X, y = digits_problem() if data == "digits" else binary_problem()
    X = StandardScaler().fit_transform(X)
    est = small_estimator(BatchMLPClassifier, learning_rate_init=0.01)
    calibrated = CalibratedClassifierCV(est, cv=3, method=method).fit(X, y)
    assert len(calibrated.calibrated_classifiers_) == 3
    for member in calibrated.calibrated_classifiers_:
        assert isinstance(member.estimator, BatchMLPClassifier)
        check_is_fitted(member.estimator)
    np.testing.assert_array_equal(calibrated.classes_, np.unique(y))
    proba = calibrated.predict_proba(X)
    assert proba.shape == (X.shape[0], np.unique(y).size)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(
        calibrated.predict(X), calibrated.classes_[proba.argmax(axis=1)]
    )


def test_soft_voting_classifier():
    X, y = digits_problem()
    X = StandardScaler().fit_transform(X)
    vote = VotingClassifier(
        [
            ("mlp", small_estimator(BatchMLPClassifier, learning_rate_init=0.01)),
            ("lr", LogisticRegression(max_iter=200)),
        ],
        voting="soft",
    ).fit(X, y)
    members = [e.predict_proba(X) for e in vote.estimators_]
    np.testing.assert_allclose(vote.predict_proba(X), np.mean(members, axis=0))
    assert vote.score(X, y) > 0.5


@pytest.mark.parametrize("data", ["digits", "binary"])
def test_stacking_classifier(data):
    X, y = digits_problem() if data == "digits" else binary_problem()
    X = StandardScaler().fit_transform(X)
    stack = StackingClassifier(
        [
            ("mlp", small_estimator(BatchMLPClassifier, learning_rate_init=0.01)),
            ("lr", LogisticRegression(max_iter=200)),
        ],
        final_estimator=LogisticRegression(max_iter=200),
        cv=3,
    ).fit(X, y)
    mlp = stack.named_estimators_["mlp"]
    assert isinstance(mlp, BatchMLPClassifier)
    # stack_method='auto' picks predict_proba for the MLP; for two classes the
    # redundant first column is dropped.
    proba = mlp.predict_proba(X)
    block = proba if proba.shape[1] > 2 else proba[:, 1:]
    features = stack.transform(X)
    np.testing.assert_allclose(features[:, : block.shape[1]], block)
    assert stack.stack_method_[0] == "predict_proba"
    assert stack.predict(X).shape == y.shape
    assert stack.score(X, y) > 0.5


def test_multioutput_regressor_and_native_multioutput():
    X, Y = regression_problem(n_targets=2)
    est = small_estimator(BatchMLPRegressor, learning_rate_init=0.01)

    wrapped = MultiOutputRegressor(est).fit(X, Y)
    native = clone(est).fit(X, Y)
    assert [e.n_outputs_ for e in wrapped.estimators_] == [1, 1]
    assert native.n_outputs_ == 2
    assert wrapped.predict(X).shape == native.predict(X).shape == Y.shape
    assert np.isfinite(wrapped.score(X, Y)) and np.isfinite(native.score(X, Y))
    for k, member in enumerate(wrapped.estimators_):
        alone = clone(est).fit(X, Y[:, k])
        np.testing.assert_array_equal(member.predict(X), alone.predict(X))
        np.testing.assert_array_equal(wrapped.predict(X)[:, k], alone.predict(X))

    # partial_fit is forwarded to every member. (scikit-learn 1.9's
    # MultiOutputRegressor.partial_fit returns None, hence no chaining.)
    incremental = MultiOutputRegressor(clone(est))
    incremental.partial_fit(X, Y)
    incremental.partial_fit(X, Y)
    assert [e.n_iter_ for e in incremental.estimators_] == [2, 2]
    assert incremental.predict(X).shape == Y.shape
