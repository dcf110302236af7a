"""Integer parameters at and beyond the C integer ranges, on both tiers.

The constraints accept any positive Python int, while the compiled loop
counts in C ``long`` and ``Py_ssize_t``. A huge value must either fit exactly
as an in-range value of the same meaning does (the oracle: a second fit with
that value), or be refused by an error naming the parameter, leaving the
estimator as it was. An ``OverflowError`` from the loop fails these tests.
"""

import ctypes

import numpy as np
import pytest
import sklearn
from conftest import Snapshot, bitwise_equal, copied_weights, use_numpy_epochs
from sklearn.utils._param_validation import InvalidParameterError

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, _extension
from skbatchnet._compiled import CompiledEpochs

HUGE = [2**63, 2**64, np.uint64(2**64 - 1), 10**30]
TIERS = ["compiled", "numpy"]
LONG_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1

rng = np.random.RandomState(0)
X = rng.randn(48, 4)
Y = X @ rng.randn(4) + 0.1 * rng.randn(48)
BASE = dict(hidden_layer_sizes=(5,), max_iter=4, random_state=0)


def _tier(monkeypatch, tier):
    """Train on ``tier``; returns the list the compiled runner's epochs join."""
    runs = []
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
        return runs
    if _extension.epoch_module() is None:
        pytest.skip("the compiled loop is not built")
    original = CompiledEpochs.run

    def run(self, *args):
        runs.append(1)
        return original(self, *args)

    monkeypatch.setattr(CompiledEpochs, "run", run)
    return runs


def _same_fit(a, b):
    assert a.n_iter_ == b.n_iter_
    assert a.loss_curve_ == b.loss_curve_
    assert bitwise_equal(copied_weights(a), copied_weights(b))


# (parameters with a huge integer, parameters of the same meaning in range)
EQUIVALENT = {
    # A mean that starts after more samples than training ever sees never
    # starts: the raw weights, as without averaging.
    "average": lambda v: (dict(solver="sgd", average=v), dict(solver="sgd")),
    "average-adam": lambda v: (dict(average=v), dict()),
    # A batch larger than the data set is the whole set.
    "batch_size": lambda v: (dict(batch_size=v), dict(batch_size="full")),
    # Stopped by the no-improvement rule long before max_iter.
    "max_iter": lambda v: (
        dict(max_iter=v, tol=1e9, n_iter_no_change=2),
        dict(max_iter=50, tol=1e9, n_iter_no_change=2),
    ),
    # Patience beyond max_iter: scikit-learn's own spelling is inf.
    "n_iter_no_change": lambda v: (
        dict(n_iter_no_change=v, tol=1e9),
        dict(n_iter_no_change=np.inf, tol=1e9),
    ),
}


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("value", HUGE, ids=str)
@pytest.mark.parametrize("name", sorted(EQUIVALENT))
def test_huge_integers_fit_as_their_in_range_equivalents(
    monkeypatch, name, value, tier
):
    runs = _tier(monkeypatch, tier)
    huge, same = EQUIVALENT[name](value)
    ours = BatchMLPRegressor(**{**BASE, **huge}).fit(X, Y)
    reference = BatchMLPRegressor(**{**BASE, **same}).fit(X, Y)
    _same_fit(ours, reference)
    assert bool(runs) == (tier == "compiled")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("value", HUGE, ids=str)
def test_a_huge_average_carries_over_partial_fit_calls(monkeypatch, value, tier):
    runs = _tier(monkeypatch, tier)
    ours = BatchMLPClassifier(**BASE, average=value)
    reference = BatchMLPClassifier(**BASE)
    labels = (X[:, 0] > 0).astype(int)
    for _ in range(3):
        ours.partial_fit(X, labels, classes=[0, 1])
        reference.partial_fit(X, labels, classes=[0, 1])
    _same_fit(ours, reference)
    assert bool(runs) == (tier == "compiled")


@pytest.mark.parametrize("value", HUGE, ids=str)
def test_the_loop_holds_a_huge_average_start_at_the_c_long_maximum(value):
    if _extension.epoch_module() is None:
        pytest.skip("the compiled loop is not built")
    _, plan = _extension.epoch_module()
    state = plan.AverageState(np.zeros(3), start=value)
    assert state.start == LONG_MAX
    assert plan.AverageState(np.zeros(3), start=LONG_MAX - 1).start == LONG_MAX - 1


@pytest.mark.parametrize("value", HUGE, ids=str)
@pytest.mark.parametrize(
    "huge, same",
    [
        # max_iter binds first.
        (lambda v: dict(max_fun=v, max_iter=15), dict(max_fun=10**6, max_iter=15)),
        # max_fun binds first.
        (lambda v: dict(max_iter=v, max_fun=25), dict(max_iter=10**6, max_fun=25)),
    ],
    ids=["max_fun", "max_iter"],
)
def test_lbfgs_limits_fit_as_their_in_range_equivalents(value, huge, same):
    params = {**BASE, "solver": "lbfgs", "tol": 0.0}
    ours = BatchMLPRegressor(**{**params, **huge(value)}).fit(X, Y)
    reference = BatchMLPRegressor(**{**params, **same}).fit(X, Y)
    _same_fit(ours, reference)


def _fitted():
    return BatchMLPRegressor(**BASE).fit(X, Y)


@pytest.mark.parametrize("value", HUGE, ids=str)
@pytest.mark.parametrize(
    "name, params, error",
    [
        ("random_state", lambda v: dict(random_state=v), InvalidParameterError),
        ("hidden_layer_sizes", lambda v: dict(hidden_layer_sizes=(v,)), ValueError),
        # Each layer fits, but the weight matrix between them cannot exist.
        (
            "hidden_layer_sizes",
            lambda v: dict(hidden_layer_sizes=(2**32, int(v) // 2**31)),
            ValueError,
        ),
    ],
    ids=["random_state", "hidden_layer_sizes", "hidden_layer_product"],
)
def test_huge_integers_that_cannot_work_are_refused_naming_the_parameter(
    value, name, params, error
):
    est = _fitted().set_params(**params(value))
    before = Snapshot(est)
    with pytest.raises(error, match=name) as info:
        est.fit(X, Y)
    assert not isinstance(info.value, OverflowError)
    before.assert_matches(est)
    # An unfitted estimator stays unfitted.
    fresh = BatchMLPRegressor(**{**BASE, **params(value)})
    with pytest.raises(error, match=name):
        fresh.fit(X, Y)
    assert not hasattr(fresh, "coefs_")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("budget", [np.inf, 1e300, 2**70])
def test_an_unbounded_working_memory_fits_as_the_default_does(
    monkeypatch, budget, tier
):
    _tier(monkeypatch, tier)
    reference = BatchMLPRegressor(**BASE).fit(X, Y)
    with sklearn.config_context(working_memory=budget):
        ours = BatchMLPRegressor(**BASE).fit(X, Y)
        np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    _same_fit(ours, reference)
