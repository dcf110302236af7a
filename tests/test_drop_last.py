"""``drop_last``: what happens to the short last batch of each epoch."""

from itertools import combinations

import numpy as np
import pytest
from conftest import (
    SMALL,
    allclose_weights,
    bitwise_equal,
    copied_weights,
    make_data,
)

from skbatchnet import BatchMLPRegressor, Network


@pytest.mark.parametrize(
    "drop_last, n, per_epoch",
    [(True, 50, 48), ("merge", 50, 50), (False, 50, 50), (True, 10, 10)],
)
def test_drop_last_counts_rows_used(drop_last, n, per_epoch):
    X, y, _ = make_data(n=n)
    est = BatchMLPRegressor(
        solver="sgd", batch_size=16, drop_last=drop_last, max_iter=3, **SMALL
    ).fit(X, y)
    assert est.n_iter_ == 3 and est.t_ == 3 * per_epoch
    assert np.isfinite(est.loss_)


def test_drop_last_changes_the_batches():
    X, y, _ = make_data(n=50)
    kw = dict(solver="sgd", batch_size=16, shuffle=False, max_iter=3, **SMALL)
    policies = (False, True, "merge")
    fits = [BatchMLPRegressor(drop_last=d, **kw).fit(X, y) for d in policies]
    for a, b in combinations(fits, 2):
        assert not allclose_weights(copied_weights(a), copied_weights(b))


def test_drop_last_never_records_nan_loss():
    # The only weighted rows sit in the short last batch, which is dropped:
    # no step has any weight. Fitting takes no step and records, for each
    # epoch, the objective E at the unchanged initial weights: not NaN, not 0.
    X, y, _ = make_data()
    w = np.r_[np.zeros(32), np.ones(8)]
    est = BatchMLPRegressor(
        solver="sgd",
        batch_size=16,
        drop_last=True,
        shuffle=False,
        max_iter=2,
        alpha=0.1,
        **SMALL,
    ).fit(X, y, sample_weight=w)
    init = Network.initialize(
        [4, 6, 1], activation="relu", random_state=SMALL["random_state"]
    )
    assert bitwise_equal(copied_weights(est), init.coefs + init.intercepts)
    objective = init.objective(X, y.reshape(-1, 1), w, alpha=0.1)
    assert est.loss_curve_ == [pytest.approx(objective, rel=1e-12)] * 2
    assert est.n_iter_ == 2
