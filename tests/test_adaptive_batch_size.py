"""batch_size='adaptive': the batch follows the tracked gradient noise scale.

The rule (skbatchnet.schedules.AdaptiveBatchSize) is checked against its
statement case by case, and a fit's sizes against the rule re-applied here,
independently, to the fit's own recorded curves: the noise scale smoothed
over the last three epochs (sums of the terms, then divided), the target a
tenth of it, at most a doubling or a halving per epoch, within the bounds
and at least eight steps per epoch.
"""

import math
import pickle

import numpy as np
import pytest
from conftest import Snapshot, use_numpy_epochs
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.schedules import AdaptiveBatchSize


def _data(n=400, d=8, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    return X, np.tanh(X @ rng.randn(d)) + 0.2 * rng.randn(n)


@pytest.mark.parametrize(
    "size, noise_scale, n, expected",
    [
        (8, 300.0, 10_000, 16),  # a tenth of 300, capped at a doubling
        (8, 40.0, 10_000, 4),  # a tenth of 40
        (8, 10.0, 10_000, 4),  # 1, floored at a halving
        (8, 0.0, 10_000, 4),  # no noise: shrink by the growth factor
        (8, math.inf, 10_000, 16),  # no estimate of |G|^2: grow
        (8, math.nan, 10_000, 8),  # no estimate at all: keep
        (64, 1e6, 400, 50),  # at least 8 steps per epoch: 400 // 8
        (3, 1.0, 10_000, 2),  # never below the minimum
    ],
)
def test_the_rule_as_stated(size, noise_scale, n, expected):
    assert AdaptiveBatchSize().next_size(size, noise_scale, n) == expected


def test_the_bounds_and_factors_are_the_users():
    rule = AdaptiveBatchSize(4, minimum=4, maximum=20, fraction=0.5, growth=4)
    assert rule.next_size(4, 1000.0, 10_000) == 16  # growth 4
    assert rule.next_size(16, 1000.0, 10_000) == 20  # the maximum
    assert rule.next_size(16, 10.0, 10_000) == 5  # half of 10
    assert rule.next_size(16, 1.0, 10_000) == 4  # the minimum
    assert rule(0) == 4


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(start=1), "start must be an integer >= 2"),
        (dict(minimum=1), "minimum must be an integer >= 2"),
        (dict(minimum=8, maximum=4), "maximum=4 must be None or an integer >= "),
        (dict(start=32, maximum=16), "start=32 is outside"),
        (dict(fraction=0.0), "fraction must be positive"),
        (dict(growth=1.0), "growth must be above 1"),
        (dict(min_steps=0), "min_steps must be an integer >= 1"),
        (dict(start=2.5), "start must be an integer"),
    ],
)
def test_bad_settings_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveBatchSize(**params)


def _rule_replayed(model, n, window=3):
    """Each epoch's size from the one before, as the default rule states it."""
    rule = AdaptiveBatchSize()
    sizes = [min(rule.start, max(n // rule.min_steps, rule.minimum))]
    g2 = np.asarray(model.squared_gradient_curve_, dtype=float)
    trace = np.asarray(model.gradient_variance_curve_, dtype=float)
    for epoch in range(1, len(model.batch_size_curve_)):
        lo = max(0, epoch - window)
        known = np.isfinite(g2[lo:epoch]) & np.isfinite(trace[lo:epoch])
        if not known.any():
            scale = math.nan
        else:
            num, den = trace[lo:epoch][known].sum(), g2[lo:epoch][known].sum()
            scale = num / den if den > 0 else math.inf
        previous = sizes[-1]
        high = min(n // rule.min_steps, math.floor(previous * rule.growth))
        low = max(rule.minimum, math.ceil(previous / rule.growth))
        if math.isnan(scale):
            target = previous
        elif math.isinf(scale):
            target = high
        else:
            target = round(rule.fraction * scale)
        sizes.append(int(min(max(target, low), high)))
    return sizes


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
def test_a_fit_follows_the_rule_on_its_own_curves(tier, monkeypatch):
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    X, y = _data()
    model = BatchMLPRegressor(
        hidden_layer_sizes=(16,),
        batch_size="adaptive",
        max_iter=25,
        random_state=0,
        n_iter_no_change=np.inf,
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.batch_size_curve_ == _rule_replayed(model, n=X.shape[0])
    # It moved: the sizes are not all the start.
    assert len(set(model.batch_size_curve_)) > 2
    assert model.noise_scale_curve_ is not None  # tracking is implied
    assert model.batch_size_ == model.batch_size_curve_[-1]


def test_partial_fit_continues_and_fit_starts_over():
    X, y = _data()
    model = BatchMLPRegressor(
        hidden_layer_sizes=(8,), batch_size="adaptive", random_state=0
    )
    for _ in range(6):
        model.partial_fit(X, y)
    assert model.batch_size_curve_ == _rule_replayed(model, n=X.shape[0])
    model.set_params(max_iter=2, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.batch_size_curve_[-2] == AdaptiveBatchSize().start


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(solver="lbfgs"), "lbfgs"),
        (dict(max_gradient_norm=1.0), "max_gradient_norm"),
        (
            dict(
                batch_sampling="poisson",
                noise_multiplier=1.0,
                max_gradient_norm=1.0,
                gradient_reduction="unbiased",
            ),
            "DP noise",
        ),  # fmt: skip
    ],
)
def test_adaptive_is_refused_where_it_cannot_track_and_changes_nothing(params, match):
    X, y = _data(n=60)
    model = BatchMLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y > 0)
    model.set_params(batch_size="adaptive", **params)
    before = Snapshot(model)
    with pytest.raises(ValueError, match=f"batch_size='adaptive'.*{match}"):
        model.fit(X, y > 0)
    before.assert_matches(model)


def test_clone_pickle_and_grid_search():
    rule = AdaptiveBatchSize(4, maximum=64)
    model = BatchMLPRegressor(hidden_layer_sizes=(4,), batch_size=rule, max_iter=3)
    assert clone(model).batch_size == rule
    assert pickle.loads(pickle.dumps(rule)) == rule
    X, y = _data(n=120)
    search = GridSearchCV(
        model, {"batch_size": [16, "adaptive", rule]}, cv=2, error_score="raise"
    )
    with pytest.warns(ConvergenceWarning):
        search.fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    fitted = pickle.loads(pickle.dumps(search.best_estimator_))
    np.testing.assert_array_equal(fitted.predict(X), search.best_estimator_.predict(X))
