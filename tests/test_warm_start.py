"""``warm_start``: a second fit continues from the first one's weights."""

import numpy as np
import pytest
from conftest import (
    SMALL,
    make_data,
    pickled_state,
)
from sklearn.base import clone

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor


def test_warm_start():
    X, _, y = make_data()
    kw = dict(solver="adam", learning_rate_init=0.01, **SMALL)
    first = BatchMLPClassifier(max_iter=40, **kw).fit(X, y)
    fresh = BatchMLPClassifier(max_iter=1, **kw).fit(X, y)
    warm = clone(first).set_params(max_iter=40).fit(X, y)
    warm.set_params(warm_start=True, max_iter=1).fit(X, y)
    assert warm.n_iter_ == 1 and len(warm.loss_curve_) == 41
    assert warm.loss_curve_[-1] < 0.9 * fresh.loss_curve_[0]
    assert warm.loss_curve_[-1] < 1.1 * first.loss_curve_[-1]
    cold = clone(first).set_params(max_iter=1).fit(X, y)
    assert cold.loss_curve_ == fresh.loss_curve_

    before = pickled_state(warm)
    with pytest.raises(ValueError, match="classes"):
        warm.fit(X[y < 2], y[y < 2])
    assert pickled_state(warm) == before
    with pytest.raises(ValueError, match=r"\b5\b"):
        warm.fit(X, np.where(y == 2, 5, y))
    assert pickled_state(warm) == before


@pytest.mark.parametrize("first, second", [(False, True), (True, False)])
def test_warm_start_toggling_early_stopping(first, second):
    # Both directions are implemented: the refit continues the curve and
    # keeps the bookkeeping of its own early_stopping setting only.
    X, y, _ = make_data()
    est = BatchMLPRegressor(warm_start=True, max_iter=2, early_stopping=first, **SMALL)
    before = list(est.fit(X, y).loss_curve_)
    est.set_params(early_stopping=second).fit(X, y)
    assert est.n_iter_ == 2
    assert len(est.loss_curve_) == 4 and est.loss_curve_[:2] == before
    assert np.isfinite(est.loss_curve_).all()
    if second:
        assert len(est.validation_scores_) == 2
        assert est.best_validation_score_ == max(est.validation_scores_)
        assert est.best_loss_ is None
    else:
        assert est.validation_scores_ is None
        assert est.best_validation_score_ is None
        assert est.best_loss_ == min(est.loss_curve_[2:])
