"""Rollback: a call that fails or is interrupted leaves no trace.

A ``partial_fit`` that fails (bad input, a non-finite loss, an unexpected
error) leaves the estimator exactly as it was; an interrupted ``fit`` keeps
the last completed epoch. Everything goes through the public API; the state
comparisons (``conftest.Snapshot``) walk ``vars(est)`` generically, private
attributes included, so they do not depend on how the parameters are stored.
"""

import pickle
import warnings

import numpy as np
import pytest
from conftest import (
    SMALL,
    Snapshot,
    bitwise_equal,
    copied_weights,
    find_instance,
    float_arrays,
    make_data,
    use_numpy_epochs,
)

import skbatchnet.backprop
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, _rollback


class _Holder:
    """The least an object needs for snapshot/restore: get_params and vars."""

    def __init__(self, random_state):
        self.random_state = random_state

    def get_params(self, deep=True):
        return {"random_state": self.random_state}


def test_restore_rewinds_both_generators_when_they_differ():
    # random_state (the caller's generator) and _rng (the training stream)
    # are usually one object; when they are two, both are rewound in place.
    given, stream = np.random.RandomState(0), np.random.RandomState(1)
    est = _Holder(given)
    est._rng = stream
    est.coefs_ = [np.zeros(2)]
    expected = (given.get_state()[1].copy(), stream.get_state()[1].copy())
    backup = _rollback.snapshot(est)
    given.rand(5)
    stream.rand(7)
    est.coefs_[0][:] = 1.0
    _rollback.restore(est, backup)
    assert est.random_state is given and est._rng is stream
    np.testing.assert_array_equal(given.get_state()[1], expected[0])
    np.testing.assert_array_equal(stream.get_state()[1], expected[1])
    np.testing.assert_array_equal(est.coefs_[0], np.zeros(2))


def test_restore_keeps_the_named_attributes():
    est = _Holder(0)
    est.coefs_, est.log_ = [np.zeros(2)], ["before"]
    backup = _rollback.snapshot(est, keep_by_reference=("log_",))
    est.coefs_, est.log_ = [np.ones(2)], ["before", "during"]
    _rollback.restore(est, backup, keep=("log_", "absent_"))
    assert est.log_ == ["before", "during"]
    np.testing.assert_array_equal(est.coefs_[0], np.zeros(2))
    assert not hasattr(est, "absent_")


def test_snapshot_sees_every_kind_of_change():
    # The comparison itself must be able to fail: each change below is one a
    # faulty rollback could make.
    X, y, _ = make_data(labels="balanced")
    est = BatchMLPRegressor(solver="adam", batch_size=8, **SMALL)
    est.partial_fit(X, y).partial_fit(X, y)

    def changed(mutate):
        other = pickle.loads(pickle.dumps(est))
        snap = Snapshot(other)
        mutate(other)
        with pytest.raises(AssertionError):
            snap.assert_matches(other)

    Snapshot(est).assert_matches(est)
    changed(lambda e: e.coefs_[0].__setitem__((0, 0), e.coefs_[0][0, 0] * -1))
    last = -1  # one bit of one bias
    changed(
        lambda e: e.intercepts_[last].__setitem__(
            0, np.nextafter(e.intercepts_[last][0], 9)
        )
    )
    changed(lambda e: e.loss_curve_.append(1.0))
    changed(lambda e: setattr(e, "t_", e.t_ + 1))
    changed(lambda e: setattr(e, "new_attribute_", 1))
    changed(
        lambda e: find_instance(e, np.random.RandomState).uniform()
    )  # random stream
    changed(lambda e: e.coefs_.__setitem__(0, e.coefs_[0].astype(np.float32)))

    def bump_hidden_array(e):
        # optimizer state, found without naming it: an array reachable from a
        # private attribute that shares no memory with the fitted parameters
        params = e.coefs_ + e.intercepts_
        for key, value in sorted(vars(e).items()):
            if key.startswith("_"):
                for a in float_arrays(value):
                    if a.size and not any(np.may_share_memory(a, p) for p in params):
                        a.flat[0] += 1.0
                        return
        raise AssertionError("no optimizer state found")

    changed(bump_hidden_array)

    # Aliasing: two attributes that were one object become two copies.
    other = pickle.loads(pickle.dumps(est))
    other.shared_a_, other.shared_b_ = [1.0], None
    other.shared_b_ = other.shared_a_
    snap = Snapshot(other)
    other.shared_b_ = list(other.shared_b_)
    with pytest.raises(AssertionError, match="shared"):
        snap.assert_matches(other)


# -- a failed partial_fit changes nothing ---------------------------------------

X40, Y_REG40, Y_CLS40 = make_data(labels="balanced")


def _bad(kind, X, y):
    """(X, y, kwargs) of a partial_fit call that must fail, and the error."""
    rng = np.random.RandomState(1)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    cases = {
        "X-nan": ((Xn, y, {}), ValueError),
        "X-inf": ((np.where(X > 2, np.inf, X), y, {}), ValueError),
        "X-n-features": ((X[:, :3], y, {}), ValueError),
        "y-length": ((X, y[:-1], {}), ValueError),
        "weight-negative": (
            (X, y, {"sample_weight": np.r_[-1.0, np.ones(len(y) - 1)]}),
            ValueError,
        ),
        "weight-nan": (
            (X, y, {"sample_weight": np.r_[np.nan, np.ones(len(y) - 1)]}),
            ValueError,
        ),
        "weight-length": ((X, y, {"sample_weight": np.ones(3)}), ValueError),
        "weight-all-zero": ((X, y, {"sample_weight": np.zeros(len(y))}), ValueError),
        # Diverges inside the third call, after minibatch steps were taken.
        "non-finite-loss": ((np.sign(X) * 1e308, y, {}), ValueError),
    }
    if kind == "classifier":
        cases["unseen-label"] = ((X, np.where(y == 2, 7, y), {}), ValueError)
        cases["other-classes"] = ((X, y, {"classes": [0, 1, 2, 3]}), ValueError)
    else:
        yn = y.copy()
        yn[5] = np.nan
        cases["y-nan"] = ((X, yn, {}), ValueError)
        cases["y-n-outputs"] = ((X, rng.randn(len(y), 2), {}), ValueError)
    return cases


BAD_CASES = sorted(
    {
        (kind, name)
        for kind in ("classifier", "regressor")
        for name in _bad(kind, X40, Y_REG40)
    }
)


def _two_partial_fits(kind, solver, random_state=0):
    kw = dict(SMALL, random_state=random_state)
    if kind == "classifier":
        est = BatchMLPClassifier(solver=solver, batch_size=7, **kw)
        est.partial_fit(X40, Y_CLS40, classes=[0, 1, 2]).partial_fit(X40, Y_CLS40)
        return est, Y_CLS40
    est = BatchMLPRegressor(solver=solver, batch_size=7, **kw)
    est.partial_fit(X40, Y_REG40).partial_fit(X40, Y_REG40)
    return est, Y_REG40


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind, case", BAD_CASES)
def test_failed_partial_fit_changes_nothing(kind, case, solver):
    est, y = _two_partial_fits(kind, solver)
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    snap = Snapshot(est)
    with pytest.raises(error):
        est.partial_fit(X_bad, y_bad, **kwargs)
    snap.assert_matches(est)
    assert (est.n_iter_, est.t_, len(est.loss_curve_)) == (2, 80, 2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", ["X-nan", "non-finite-loss"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_failed_partial_fit_with_random_state_instance_changes_nothing(
    kind, solver, case
):
    # random_state=RandomState(...) is advanced in place by training, so it is
    # part of the state a failed call must leave as it was; so is its being
    # the stream that training draws from.
    est, y = _two_partial_fits(kind, solver, np.random.RandomState(0))
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    snap = Snapshot(est)
    with pytest.raises(error):
        est.partial_fit(X_bad, y_bad, **kwargs)
    snap.assert_matches(est)


class _Fault(Exception):
    pass


def _fail_at_call(monkeypatch, k, exc):
    """Make the k-th minibatch gradient (1-based) raise ``exc``."""
    original = skbatchnet.backprop.Network.gradient
    calls = {"n": 0}

    def batch_gradient(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc
        return original(self, *args, **kwargs)

    use_numpy_epochs(monkeypatch)
    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", batch_gradient)
    return calls


@pytest.mark.parametrize("exc", [_Fault("disk on fire"), MemoryError()])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_unexpected_error_mid_epoch_changes_nothing(monkeypatch, kind, solver, exc):
    # 40 rows in batches of 7: the third step is in the middle of the pass,
    # after the weights, the optimizer state and the random stream moved.
    est, y = _two_partial_fits(kind, solver)
    snap = Snapshot(est)
    calls = _fail_at_call(monkeypatch, 3, exc)
    with pytest.raises(type(exc)):
        est.partial_fit(X40, y)
    assert calls["n"] == 3
    snap.assert_matches(est)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", ["X-nan", "non-finite-loss"])
@pytest.mark.parametrize("random_state", [0, "instance"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_failed_partial_fit_is_invisible_later(kind, solver, random_state, case):
    # A failed call in the middle of a run changes nothing that follows: the
    # run ends in exactly the state of a run that never made the call.
    def rs():
        return np.random.RandomState(0) if random_state == "instance" else 0

    clean, y = _two_partial_fits(kind, solver, rs())
    failed, _ = _two_partial_fits(kind, solver, rs())
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    with pytest.raises(error):
        failed.partial_fit(X_bad, y_bad, **kwargs)
    for est in (clean, failed):
        est.partial_fit(X40, y).partial_fit(X40[::-1], y[::-1])
    # fit after partial_fit draws from random_state again
    for est in (clean, failed):
        est.set_params(warm_start=True, max_iter=2).fit(X40, y)
    Snapshot(clean).assert_matches(failed)


# -- an interrupted fit keeps the last completed epoch ---------------------------


@pytest.mark.parametrize("at_batch", [1, 3])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_interrupted_fit_keeps_last_completed_epoch(
    monkeypatch, kind, solver, at_batch
):
    # 40 rows in batches of 10: 4 steps per epoch; interrupt epoch 3.
    Est, y = (
        (BatchMLPClassifier, Y_CLS40)
        if kind == "classifier"
        else (BatchMLPRegressor, Y_REG40)
    )
    params = dict(solver=solver, batch_size=10, shuffle=True, max_iter=50, **SMALL)
    use_numpy_epochs(monkeypatch)  # as the interrupted fit below trains
    reference = Est(**{**params, "max_iter": 2}).fit(X40, y)

    calls = _fail_at_call(monkeypatch, 2 * 4 + at_batch, KeyboardInterrupt())
    est = Est(**params)
    with pytest.warns(UserWarning, match="(?i)interrupt"):
        try:
            est.fit(X40, y)
        except KeyboardInterrupt:  # would end the pytest session
            pytest.fail("fit let the KeyboardInterrupt through")
    assert calls["n"] == 2 * 4 + at_batch
    monkeypatch.undo()

    assert est.n_iter_ == 2
    assert len(est.loss_curve_) == 2
    assert est.loss_curve_ == reference.loss_curve_
    assert est.t_ == reference.t_ == 80
    assert bitwise_equal(copied_weights(est), copied_weights(reference)), (
        "the interrupted fit kept weights from inside epoch 3, not the weights "
        "at the end of epoch 2"
    )
    assert np.array_equal(est.predict(X40), reference.predict(X40))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_interrupted_partial_fit_keeps_last_completed_epoch(monkeypatch, kind, solver):
    # The last completed epoch of an interrupted partial_fit is the state
    # before the call: either the interrupt propagates or a warning is given,
    # and nothing of the unfinished pass is kept.
    est, y = _two_partial_fits(kind, solver)
    snap = Snapshot(est)
    _fail_at_call(monkeypatch, 3, KeyboardInterrupt())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.partial_fit(X40, y)
        except KeyboardInterrupt:
            pass
        else:
            assert any("nterrupt" in str(w.message) for w in caught)
    snap.assert_matches(est)
