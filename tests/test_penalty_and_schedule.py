"""Two causes the messages name: a large alpha, and an 'invscaling' power_t.

- A divergence names alpha when the L2 penalty alone would diverge (SGD's
  steps on it grow without bound) or overflow (any solver); the limit it
  states is checked against scikit-learn's own SGD on a quadratic, and the
  bound it suggests must fix the fit.
- ``learning_rate='invscaling'`` computes its rate without overflow, as
  scikit-learn does where scikit-learn does not overflow, and refuses a
  ``power_t`` that makes the rate 0 after the first epoch, before training.
"""

import math
import re
from decimal import MAX_EMAX, MIN_EMIN, Decimal, Overflow, localcontext

import numpy as np
import pytest
from conftest import Snapshot, use_numpy_epochs, without_growth_rule
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet._optimizers import invscaling_rate

SKLEARN_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain "
    "large values and need to be preprocessed."
)
TIERS = ["compiled", "numpy"]


class Huge(int):
    """10**400, a power_t beyond the float range, with a short test id."""

    def __str__(self):
        return "10**400"


HUGE = Huge(10**400)

rng = np.random.RandomState(0)
X = rng.randn(100, 3)
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.randn(100)
S, LR = 100, 1e-3  # unit weights: S is the number of rows
BASE = dict(hidden_layer_sizes=(4,), random_state=0)


def _tier(monkeypatch, tier):
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)


def _error(est, X=X, y=Y):
    with pytest.raises(ValueError) as info, np.errstate(all="ignore"):
        est.fit(X, y)
    message = str(info.value)
    assert message.startswith(SKLEARN_NON_FINITE + " Training diverged: "), message
    return message


def _number(pattern, message):
    found = re.search(pattern, message)
    assert found, (pattern, message)
    return float(found.group(1))


def _sklearn_sgd_grows(a, momentum, nesterov, steps=3000):
    """Whether scikit-learn's SGD at rate ``a`` diverges on ``w ** 2 / 2``."""
    w = np.ones(1)
    sgd = SGDOptimizer([w], learning_rate_init=a, momentum=momentum, nesterov=nesterov)
    for _ in range(steps):
        sgd.update_params([w], [w.copy()])
    return not abs(w[0]) < 1


# -- alpha: the penalty alone diverges -------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "momentum, nesterov", [(0.0, False), (0.5, False), (0.9, False), (0.9, True)]
)
def test_a_penalty_whose_steps_diverge_is_named_with_its_limit_and_fix(
    monkeypatch, momentum, nesterov, reduction, tier
):
    _tier(monkeypatch, tier)
    mass = 10 if reduction == "sum" else 1  # a batch's weight, with 'sum'
    # The penalty's own step, 50 times past scikit-learn's limit of 1.36 to 3.8.
    alpha = 200 * S / (LR * mass)
    params = dict(
        solver="sgd",
        learning_rate_init=LR,
        momentum=momentum,
        nesterovs_momentum=nesterov,
        gradient_reduction=reduction,
        batch_size=10,
        max_iter=100,
        n_iter_no_change=10**6,
        **BASE,
    )
    message = _error(BatchMLPRegressor(alpha=alpha, **params))
    assert f"alpha={alpha:g}" in message and "L2 penalty" in message
    limit = _number(r"past ([0-9.]+), the limit", message)
    assert _sklearn_sgd_grows(1.02 * limit, momentum, nesterov)
    assert not _sklearn_sgd_grows(0.98 * limit, momentum, nesterov)
    # The suggested alpha puts the penalty's step at that limit...
    bound = _number(r"lower alpha below ([0-9.e+]+),", message)
    assert bound * LR * mass / S == pytest.approx(limit, rel=5e-3)
    # ... and below it the fit no longer diverges.
    est = BatchMLPRegressor(alpha=0.8 * bound, **params).fit(X, Y)
    assert np.isfinite(est.loss_curve_).all()


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("Est", [BatchMLPRegressor, BatchMLPClassifier])
def test_alpha_1e300_with_sgd_is_named_and_the_estimator_is_unchanged(
    monkeypatch, Est, tier
):
    _tier(monkeypatch, tier)
    y = Y if Est is BatchMLPRegressor else (Y > 0).astype(int)
    est = Est(solver="sgd", max_iter=5, **BASE).fit(X, y)
    est.set_params(alpha=1e300)
    before = Snapshot(est)
    message = _error(est, y=y)
    assert "alpha=1e+300" in message and "lower alpha below" in message, message
    before.assert_matches(est)


@pytest.mark.parametrize(
    "params, data",
    [
        (dict(solver="sgd", learning_rate_init=1e8), "as is"),  # the rate's fault
        (dict(solver="sgd", learning_rate_init=1.0, momentum=0.0), "scaled"),
        (dict(solver="adam", learning_rate_init=1e150), "as is"),
        (dict(solver="lbfgs"), "scaled"),
    ],
)
def test_a_small_alpha_is_not_blamed(monkeypatch, params, data):
    # The non-finite path: at 1e8 the loss also grows past the growth rule
    # first (tests/test_growth.py checks that rule's words on alpha).
    without_growth_rule(monkeypatch)
    X_ = X * 1e150 if data == "scaled" else X
    message = _error(BatchMLPRegressor(**params, **BASE), X=X_)
    assert "alpha" not in message, message


# -- alpha: the penalty alone overflows ----------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "solver, alpha", [("lbfgs", 1e156), ("lbfgs", 1e300), ("adam", 1e308)]
)
def test_a_penalty_that_overflows_is_named_and_its_bound_fixes_the_fit(
    monkeypatch, solver, alpha, tier
):
    _tier(monkeypatch, tier)
    params = dict(solver=solver, max_iter=20, **BASE)
    message = _error(BatchMLPRegressor(alpha=alpha, **params))
    assert f"alpha={alpha:g}" in message and "overflows" in message, message
    bound = _number(r"lower alpha below ([0-9.e+]+)[,;]", message)
    assert bound < alpha
    est = BatchMLPRegressor(alpha=bound / 10, **params).fit(X, Y)
    assert np.isfinite(est.loss_curve_).all()


@pytest.mark.parametrize("tier", TIERS)
def test_a_penalty_that_overflows_before_any_step_is_named_not_the_data(
    monkeypatch, tier
):
    _tier(monkeypatch, tier)
    message = _error(BatchMLPRegressor(solver="sgd", alpha=1.7e308, **BASE))
    assert "before any step" in message and "alpha=1.7e+308" in message, message
    assert "the inputs or the sample weights overflow" not in message


# -- power_t ---------------------------------------------------------------------------


@pytest.mark.parametrize("power_t", [0.0, 0.25, 0.5, 1.0, 2, 3.7, 60.0])
@pytest.mark.parametrize("time_step", [1, 7, 100, 12345, 10**9])
def test_the_invscaling_rate_is_sklearns_where_sklearns_is_finite(time_step, power_t):
    sgd = SGDOptimizer([np.zeros(1)], 0.3, lr_schedule="invscaling", power_t=power_t)
    try:
        sgd.iteration_ends(time_step)
    except OverflowError:  # (10**9 + 1) ** 60: ours is the exact rate then
        exact = _exact_rate(0.3, time_step, power_t)
        assert invscaling_rate(0.3, time_step, power_t) == pytest.approx(exact)
    else:
        assert invscaling_rate(0.3, time_step, power_t) == sgd.learning_rate


def _exact_rate(lr, time_step, power_t):
    """The rate in 100-digit decimal arithmetic, rounded to a float."""
    with localcontext() as context:
        context.prec, context.Emin, context.Emax = 100, MIN_EMIN, MAX_EMAX
        context.traps[Overflow] = False  # a power beyond 10**MAX_EMAX is inf
        exact = Decimal(lr) / Decimal(time_step + 1) ** Decimal(power_t)
        return float(exact)  # rounds to nearest, to 0 below half the tiniest


@pytest.mark.parametrize(
    "lr, time_step, power_t",
    [
        (1e-3, 100, 150),  # the power overflows, the rate is a normal float
        (1e-3, 100, 159.5),  # the rate is subnormal
        (1e-3, 100, 200.0),  # the rate is 0
        (1e300, 10**6, 60),  # a huge initial rate
        (0.1, 100, HUGE),  # power_t itself beyond the float range
        (0.1, 0, HUGE),
    ],
    ids=str,
)
def test_the_invscaling_rate_beyond_the_float_range_is_the_exact_rate(
    lr, time_step, power_t
):
    exact = _exact_rate(lr, time_step, power_t)
    ours = invscaling_rate(lr, time_step, power_t)
    assert ours == pytest.approx(exact, rel=1e-12, abs=0)


def _schedule(**params):
    return BatchMLPRegressor(
        solver="sgd", learning_rate="invscaling", learning_rate_init=LR, **BASE
    ).set_params(**params)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize(
    "power_t", [100, 150, 159, 161, 200, 200.0, 1000, HUGE], ids=str
)
def test_a_power_t_that_zeroes_the_first_rate_is_refused_before_training(
    monkeypatch, power_t, method, tier
):
    _tier(monkeypatch, tier)
    # A fit starts afresh; a partial_fit continues its optimizer, whose
    # power_t is the first call's, so it is tried on a new estimator.
    est = _schedule(max_iter=3)
    if method == "fit":
        est.fit(X, Y)
    est.set_params(power_t=power_t)
    # The rate after the call's first epoch over the 100 rows: t = 100.
    refused = _exact_rate(LR, 100, power_t) == 0
    before = Snapshot(est)
    if not refused:
        getattr(est, method)(X, Y)  # the rate may reach 0 later: no error
        assert np.isfinite(est.loss_curve_).all()
        return
    with pytest.raises(ValueError, match=r"power_t=.*power_t below") as info:
        getattr(est, method)(X, Y)
    before.assert_matches(est)
    # The power_t suggested is the one the rate reaches 0 at.
    largest = _number(r"power_t below ([0-9.e+]+)", str(info.value))
    assert _exact_rate(LR, 100, 0.999 * largest) > 0
    assert _exact_rate(LR, 100, 1.001 * largest) == 0


def test_a_partial_fit_whose_rate_has_reached_0_is_refused_and_changes_nothing():
    est = _schedule(power_t=150)
    est.partial_fit(X, Y)  # t = 100: the rate is about 1e-304
    assert math.isclose(est.t_, 100)
    before = Snapshot(est)
    with pytest.raises(ValueError, match=r"power_t=150 .*\(200 \+ 1\) \*\* 150"):
        est.partial_fit(X, Y)
    before.assert_matches(est)
