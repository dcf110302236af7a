"""The divergence-by-growth rule: a loss that runs away ends the fit, one that
bounces does not.

The rule, as documented (user guide, "When training diverges"): two epochs
in a row whose training loss exceeds 1000 times the first epoch's
(``loss_curve_[0]``) are a divergence. ``fit`` then raises and changes
nothing, or, with a held-out set, stops at the best validated weights;
``partial_fit`` and warm starts, whose first epoch may have seen other data,
only warn. The oracle below is that sentence, written here as a counter, not
read from the package.
"""

import dataclasses
import re
import warnings

import numpy as np
import pytest
from conftest import Snapshot, use_numpy_epochs, without_growth_rule
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet._base import BaseBatchMLP
from skbatchnet._growth import LossGrowth

FACTOR, IN_A_ROW = 1000, 2


def _breaks(curve):
    """Indices of the epochs that break the rule: each one that makes
    ``IN_A_ROW`` consecutive epochs above ``FACTOR`` times the first."""
    out, run = [], 0
    for i, loss in enumerate(curve[1:], start=1):
        run = run + 1 if loss > FACTOR * curve[0] else 0
        if run == IN_A_ROW:
            out.append(i)
    return out


# The case: standardized digits, plain SGD with momentum 0.9 at
# batch size 1 and rate 0.01. The loss multiplies by 5 to 11 per epoch; on
# these 600 rows it passes 1000 times the first epoch's in epoch 6.
_X, _Y = load_digits(return_X_y=True)
X_DIGITS, Y_DIGITS = StandardScaler().fit_transform(_X[:600]), _Y[:600]
RUNAWAY = dict(
    hidden_layer_sizes=(64,),
    solver="sgd",
    momentum=0.9,
    batch_size=1,
    learning_rate_init=0.01,
    max_iter=12,
    random_state=0,
)
TIERS = pytest.mark.parametrize("numpy_epochs", [False, True], ids=["loop", "numpy"])


def _free_curve(monkeypatch, **params):
    """The runaway run's loss curve with the rule switched off."""
    with monkeypatch.context() as m:
        without_growth_rule(m)
        est = BatchMLPClassifier(**{**RUNAWAY, **params})
        return est.fit(X_DIGITS, Y_DIGITS).loss_curve_


def _growth_warnings(record):
    return [w for w in record if "the training loss grew" in str(w.message)]


# -- it stops a runaway ---------------------------------------------------------


@TIERS
def test_the_runaway_fit_raises_where_the_rule_says_and_changes_nothing(
    monkeypatch, numpy_epochs
):
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    curve = _free_curve(monkeypatch)
    breaks = _breaks(curve)
    assert breaks and breaks[0] < RUNAWAY["max_iter"] - 1, curve
    epoch = breaks[0] + 1
    est = BatchMLPClassifier(**RUNAWAY)
    snapshot = Snapshot(est)
    with pytest.raises(ValueError) as info:
        est.fit(X_DIGITS, Y_DIGITS)
    message = str(info.value)
    assert message.startswith("Training diverged: the training loss grew to "), message
    assert f"grew to {curve[epoch - 1]:.4g} in epoch {epoch}," in message, message
    assert f"more than 1000 times the first epoch's {curve[0]:.4g}" in message
    assert "at learning rate 0.01" in message
    # The cause and the remedies.
    assert "too large for this batch size and momentum" in message
    for name in ("learning_rate_init", "momentum", "batch_size"):
        assert name in message, name
    snapshot.assert_matches(est)


def test_a_runaway_refit_keeps_the_previous_fit():
    est = BatchMLPClassifier(**{**RUNAWAY, "batch_size": 32}).fit(X_DIGITS, Y_DIGITS)
    snapshot = Snapshot(est)
    with pytest.raises(ValueError, match="the training loss grew"):
        est.set_params(batch_size=1).fit(X_DIGITS, Y_DIGITS)
    est.set_params(batch_size=32)
    snapshot.assert_matches(est)


@TIERS
def test_with_early_stopping_it_stops_at_the_best_validated_weights(
    monkeypatch, numpy_epochs
):
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    params = dict(early_stopping=True, n_iter_no_change=100, **RUNAWAY)
    est = BatchMLPClassifier(**params)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X_DIGITS, Y_DIGITS)
    [warning] = _growth_warnings(record)
    assert warning.category is ConvergenceWarning
    assert "keeps the weights of the best validation score" in str(warning.message)
    # It stopped at the epoch that broke the rule, recorded with its loss.
    assert _breaks(est.loss_curve_) == [est.n_iter_ - 1] and est.n_iter_ < 12
    assert len(est.validation_scores_) == est.n_iter_
    assert np.isnan(est.validation_scores_[-1])
    # Oracle: the same run stopped after its best epoch ends on those weights.
    best = int(np.nanargmax(est.validation_scores_)) + 1
    reference = BatchMLPClassifier(**{**params, "max_iter": best})
    reference.fit(X_DIGITS, Y_DIGITS)
    for ours, theirs in zip(est.coefs_ + est.intercepts_, reference.coefs_):
        np.testing.assert_array_equal(ours, theirs)


# -- where it only warns ----------------------------------------------------------


@TIERS
def test_partial_fit_warns_once_where_the_rule_says_and_goes_on(
    monkeypatch, numpy_epochs
):
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    est = BatchMLPClassifier(**RUNAWAY)
    calls = []
    for _ in range(10):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            est.partial_fit(X_DIGITS, Y_DIGITS, classes=np.arange(10))
        calls.append(_growth_warnings(record))
    assert est.n_iter_ == 10
    breaks = _breaks(est.loss_curve_)
    assert breaks, est.loss_curve_
    assert [i for i, found in enumerate(calls) if found] == breaks
    [warning] = calls[breaks[0]]
    assert warning.category is RuntimeWarning
    assert "Training goes on" in str(warning.message)
    assert "earlier call (partial_fit" in str(warning.message)


def test_a_warm_start_warns_instead_of_raising():
    est = BatchMLPClassifier(**{**RUNAWAY, "max_iter": 1})
    est.fit(X_DIGITS, Y_DIGITS)
    est.set_params(warm_start=True, max_iter=11)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X_DIGITS, Y_DIGITS)
    [warning] = _growth_warnings(record)
    assert warning.category is RuntimeWarning
    assert est.n_iter_ == 11 and len(est.loss_curve_) == 12
    # The second call's epochs are numbered from 1: loss_curve_[i] is its
    # epoch i.
    [index] = _breaks(est.loss_curve_)
    assert f"in epoch {index}," in str(warning.message)


def test_a_rule_that_does_not_stop_only_warns(monkeypatch):
    # The hook for training under differentially private noise, where a stop
    # decided by the training data would leak it: the same rule, warning.
    stopping = BaseBatchMLP._stopping

    def warning_only(self):
        return dataclasses.replace(stopping(self), growth=LossGrowth(stops=False))

    monkeypatch.setattr(BaseBatchMLP, "_stopping", warning_only)
    est = BatchMLPClassifier(**RUNAWAY)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X_DIGITS, Y_DIGITS)
    [warning] = _growth_warnings(record)
    assert warning.category is RuntimeWarning
    assert "the rule only warns in this run" in str(warning.message)
    assert est.n_iter_ == RUNAWAY["max_iter"]


@TIERS
@pytest.mark.parametrize("alpha, rate", [(1e-4, 1.0), (600.0, 0.5)])
def test_the_message_names_alpha_when_the_penalty_alone_diverges(
    monkeypatch, numpy_epochs, alpha, rate
):
    # Full-batch SGD without momentum on 100 rows. At rate 0.5, alpha = 600
    # makes a step on the penalty alone take 3 times the weights away, past
    # the limit of 2 (alpha / S >= 1), while the data alone trains; at rate 1
    # the data alone diverges, and alpha = 1e-4 is not to blame. Both losses
    # grow for epochs before they would overflow.
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    rng = np.random.RandomState(0)
    X = rng.randn(100, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.randn(100)
    params = dict(hidden_layer_sizes=(4,), solver="sgd", momentum=0.0, alpha=alpha)
    params.update(batch_size="full", learning_rate_init=rate, random_state=0)
    with pytest.raises(ValueError, match="the training loss grew") as info:
        BatchMLPRegressor(max_iter=100, **params).fit(X, y)
    message = str(info.value)
    # One step an epoch: a larger batch is not a remedy.
    assert "batch_size" not in message, message
    if alpha < 1:
        assert "alpha" not in message, message
        return
    assert "alpha=600" in message, message
    bound = float(re.search(r"lower alpha below ([0-9.e+]+),", message).group(1))
    assert bound < alpha
    BatchMLPRegressor(max_iter=100, **{**params, "alpha": bound / 2}).fit(X, y)


@pytest.mark.parametrize("seed", range(20))
def test_the_rule_breaks_at_each_second_epoch_in_a_row_above_the_line(seed):
    rng = np.random.RandomState(seed)
    # Losses around the line: a first epoch of 1, then 1 or 10^4 at random.
    curve = [1.0] + list(np.where(rng.rand(15) < 0.6, 1e4, 1.0))
    rule = LossGrowth()
    found = [k for k in range(1, len(curve)) if rule.broken(curve[:k], curve[k])]
    assert found == _breaks(curve), curve


def test_a_first_loss_of_zero_gives_no_scale():
    assert not LossGrowth().broken([0.0, 1.0], 1.0)


# -- it leaves healthy runs alone ----------------------------------------------------


def _noisy_regression(seed):
    X, y = make_regression(n_samples=200, n_features=5, noise=50, random_state=seed)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _flipped_labels(seed):
    return make_classification(
        n_samples=200, n_features=6, flip_y=0.3, random_state=seed
    )


def _large_targets(seed):
    X, y = make_regression(n_samples=200, n_features=5, noise=10, random_state=seed)
    return X, 100 * y  # the loss is about 10^8


def _falling_toward_zero(seed):
    # A target the network fits almost exactly: the loss falls from 10^-2 to
    # 10^-8 and bounces thousands of times above its best, far below the first.
    rng = np.random.RandomState(1)
    X = rng.randn(1000, 5)
    return X, 1e-2 * (X @ rng.randn(5))


def _unscaled(seed):
    # scikit-learn's estimator checks' data (check_fit_check_is_fitted): at
    # these inputs the first full-batch step overshoots, the loss grows 4,600
    # times for one epoch, and the next step undoes it.
    rng = np.random.RandomState(42)
    return rng.normal(loc=100, size=(100, 2)), rng.normal(size=100)


HEALTHY = {
    **{
        f"noisy-sgd-batch-1-seed-{seed}": (
            BatchMLPRegressor,
            dict(
                solver="sgd", batch_size=1, learning_rate_init=0.01, random_state=seed
            ),
            _noisy_regression,
            seed,
        )
        for seed in range(4)
    },
    **{
        f"flipped-labels-adam-batch-2-seed-{seed}": (
            BatchMLPClassifier,
            dict(batch_size=2, learning_rate_init=0.01, random_state=seed),
            _flipped_labels,
            seed,
        )
        for seed in range(4)
    },
    "large-targets-adam": (
        BatchMLPRegressor,
        dict(batch_size=4, learning_rate_init=1.0, random_state=0),
        _large_targets,
        0,
    ),
    "large-targets-sgd": (
        BatchMLPRegressor,
        dict(solver="sgd", batch_size=1, learning_rate_init=1e-6, random_state=0),
        _large_targets,
        0,
    ),
    "falling-toward-zero-adam": (
        BatchMLPRegressor,
        dict(batch_size=4, learning_rate_init=0.03, random_state=1, max_iter=40),
        _falling_toward_zero,
        0,
    ),
    "one-epoch-spike-full-batch-sgd": (
        BatchMLPRegressor,
        dict(solver="sgd", hidden_layer_sizes=(100,), random_state=0, max_iter=15),
        _unscaled,
        0,
    ),
}


@TIERS
@pytest.mark.parametrize("case", sorted(HEALTHY))
def test_a_healthy_fit_never_breaks_the_rule(monkeypatch, case, numpy_epochs):
    if numpy_epochs:
        use_numpy_epochs(monkeypatch)
    Est, params, data, seed = HEALTHY[case]
    X, y = data(seed)
    base = dict(hidden_layer_sizes=(16,), max_iter=20, tol=0, n_iter_no_change=100)
    est = Est(**{**base, **params})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert not _growth_warnings(record)
    assert est.n_iter_ == est.max_iter
    curve = est.loss_curve_
    # What makes each case a test: the loss moves up as well as down.
    assert any(b > a for a, b in zip(curve, curve[1:])), curve
    if case.startswith("one-epoch-spike"):
        assert curve[1] > FACTOR * curve[0] > FACTOR * curve[2], curve
