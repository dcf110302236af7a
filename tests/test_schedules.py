"""Batch-size schedules (``skbatchnet.schedules``) and their rate rules.

The oracles are independent of the code under test: fixed-batch fits chained
by ``warm_start`` or ``partial_fit`` with the batch size (and rate) changed
by hand between them, and a reference loop written here from the formulas
(its gradients from ``tests/_reference.py``, the sklearn shuffle chain and
Adam's update spelled out), with the rate rules as literal formulas.
"""

import math
import pickle

import numpy as np
import pytest
from _reference import flatten, ref_reduced_gradient, unflatten
from conftest import Snapshot, copied_weights, use_numpy_epochs
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.backprop import Network
from skbatchnet.schedules import (
    BatchSizeSchedule,
    GeometricBatchSize,
    StepBatchSize,
    learning_rate_factor,
)

N = 24


def _data(n=N, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    y = np.tanh(X @ rng.randn(3)) + 0.1 * rng.randn(n)
    return X, y


def _sgd(**params):
    base = dict(
        hidden_layer_sizes=(4,),
        activation="tanh",
        solver="sgd",
        momentum=0.0,
        learning_rate="constant",
        learning_rate_init=0.02,
        shuffle=False,
        alpha=0.0,
        tol=0.0,
        n_iter_no_change=1000,
        random_state=0,
    )
    base.update(params)
    return BatchMLPRegressor(**base)


class Returns(BatchSizeSchedule):
    """A schedule that gives ``bad`` from epoch ``at`` on, 4 before."""

    def __init__(self, bad, at=0):
        self.bad, self.at = bad, at

    def __call__(self, epoch):
        return self.bad if epoch >= self.at else 4


# -- the schedule objects --------------------------------------------------------


def test_step_table_values_and_validation():
    schedule = StepBatchSize({10: 32, 0: 8, 20: "full"})
    assert [schedule(e) for e in (0, 9, 10, 19, 20, 10**9)] == [
        8,
        8,
        32,
        32,
        "full",
        "full",
    ]
    assert repr(schedule) == "StepBatchSize({0: 8, 10: 32, 20: 'full'})"
    for sizes, error in [
        ({1: 8}, "epoch 0"),
        ({0: 0}, "positive integer"),
        ({0: -4}, "positive integer"),
        ({0: 2.0}, "positive integer"),
        ({0: "auto"}, "positive integer"),
        ({0: 8, -1: 4}, "epochs must be integers >= 0"),
        ({0: 8, 1.5: 4}, "epochs must be integers >= 0"),
    ]:
        with pytest.raises(ValueError, match=error):
            StepBatchSize(sizes)
    with pytest.raises(TypeError, match=r"dict \{epoch: batch_size\}"):
        StepBatchSize([(0, 8)])


def test_geometric_values_and_validation():
    schedule = GeometricBatchSize(8, 512, every=5)
    expected = {0: 8, 4: 8, 5: 16, 10: 32, 29: 256, 30: 512, 10**12: 512}
    assert {e: schedule(e) for e in expected} == expected
    assert [GeometricBatchSize(3, 100, factor=5)(e) for e in range(4)] == [
        3,
        15,
        75,
        100,
    ]
    assert (
        repr(schedule) == "GeometricBatchSize(start=8, maximum=512, every=5, factor=2)"
    )
    for args, kw, error in [
        ((0, 8), {}, "start must be an integer >= 1"),
        ((8, 4), {}, "maximum=4 is below its start=8"),
        ((8, 64), {"every": 0}, "every must be"),
        ((8, 64), {"factor": 1}, "factor must be an integer >= 2"),
        ((8, 64), {"factor": 1.5}, "factor must be"),
    ]:
        with pytest.raises(ValueError, match=error):
            GeometricBatchSize(*args, **kw)


def test_schedules_compare_hash_pickle_and_deep_copy_by_value():
    a, b = StepBatchSize({0: 8, 5: 16}), StepBatchSize({5: 16, 0: 8})
    assert a == b and hash(a) == hash(b) and a != StepBatchSize({0: 8, 5: 32})
    assert a != GeometricBatchSize(8, 16, every=5) and a != 8
    g = GeometricBatchSize(8, 64, every=2)
    for schedule in (a, g, Returns(4)):
        copy = pickle.loads(pickle.dumps(schedule))
        assert copy == schedule and copy is not schedule
        assert repr(copy) == repr(schedule)
        assert clone(schedule, safe=False) == schedule


# -- the rate rules, against the formulas written out ---------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "unbiased"])
@pytest.mark.parametrize("rule", ["auto", "linear", "sqrt", None])
def test_the_rate_rules_are_the_stated_formulas(solver, reduction, rule):
    b0, b = 16, 64
    r = b / b0
    sgd_sum = solver == "sgd" and reduction == "sum"
    expected = {
        # SGD leaves the rate alone; Adam takes the square root.
        "auto": 1.0 if solver == "sgd" else math.sqrt(r),
        # The effective rate grows like b (like sqrt(b)); SGD under 'sum'
        # already carries one factor of b in its step.
        "linear": 1.0 if sgd_sum else r,
        "sqrt": 1 / math.sqrt(r) if sgd_sum else math.sqrt(r),
        None: 1.0,
    }[rule]
    factor = learning_rate_factor(
        rule, b, b0, solver=solver, gradient_reduction=reduction
    )
    assert factor == pytest.approx(expected, rel=1e-15)
    same = learning_rate_factor(
        rule, b0, b0, solver=solver, gradient_reduction=reduction
    )
    assert same == 1.0


# -- exactly the steps of fixed-batch fits between the switch points --------------

SWITCHES = StepBatchSize({0: 4, 3: 16, 5: "full"})
CHAIN = [(4, 3), (16, 2), ("full", 2)]  # (batch_size, epochs) of each stretch


@pytest.mark.parametrize("numpy_tier", [False, True])
@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize(
    "reduction, rule, rate",
    [
        # The rate of each stretch by hand, from the stated formulas (b0 = 4).
        ("sum", "auto", lambda b: 0.005),
        ("sum", "linear", lambda b: 0.005),
        ("sum", "sqrt", lambda b: 0.005 * math.sqrt(4 / b)),
        ("mean", "auto", lambda b: 0.02),
        ("mean", "linear", lambda b: 0.02 * b / 4),
        ("unbiased", "sqrt", lambda b: 0.02 * math.sqrt(b / 4)),
    ],
)
def test_a_schedule_takes_the_steps_of_the_fixed_batch_fits_it_switches_between(
    monkeypatch, numpy_tier, average, reduction, rule, rate
):
    if numpy_tier:
        use_numpy_epochs(monkeypatch)
    X, y = _data()
    kw = dict(gradient_reduction=reduction, average=average)
    scheduled = _sgd(batch_size=SWITCHES, learning_rate_scaling=rule, max_iter=7, **kw)
    scheduled.set_params(learning_rate_init=rate(4))
    scheduled.fit(X, y)

    chained = _sgd(**kw)
    for size, epochs in CHAIN:
        b = N if size == "full" else size
        chained.set_params(batch_size=size, max_iter=epochs, learning_rate_init=rate(b))
        chained.fit(X, y)
        chained.set_params(warm_start=True)
    # Plain SGD keeps no state a warm start would reset: the same steps,
    # the same rounding.
    for a, b in zip(copied_weights(scheduled), copied_weights(chained)):
        np.testing.assert_array_equal(a, b)
    assert scheduled.loss_curve_ == chained.loss_curve_
    assert scheduled.batch_size_curve_ == [4, 4, 4, 16, 16, N, N]
    assert scheduled.n_steps_per_epoch_ == [6, 6, 6, 2, 2, 1, 1]
    assert scheduled.batch_size_ == N and scheduled.n_iter_ == 7


def _reference_run(est, X, y, sizes, rates, *, seed, b1=0.9, b2=0.999, eps=1e-8):
    """The steps written from the formulas: scikit-learn's shuffle chain (each
    epoch permutes the last epoch's order), the reduced gradient of
    ``_reference``, and plain SGD or Adam at each epoch's rate."""
    coefs, intercepts = copied_weights(est)[:2], copied_weights(est)[2:]
    theta, n = flatten(coefs, intercepts), X.shape[0]
    rng, order = np.random.RandomState(seed), np.arange(n)
    m, v, t = np.zeros_like(theta), np.zeros_like(theta), 0
    # Without sample weights 'unbiased' divides by |B|, as 'mean' does.
    reduction = "sum" if est.gradient_reduction == "sum" else "mean"
    for size, rate in zip(sizes, rates):
        permutation = np.arange(n)
        rng.shuffle(permutation)
        order = order[permutation]
        for start in range(0, n, size):
            rows = order[start : start + size]
            layers = unflatten(theta, coefs, intercepts)
            net = Network(*layers, activation="tanh", loss="squared_error")
            grads = ref_reduced_gradient(
                net, X[rows], y[rows, None], None, 0.0, n, reduction
            )
            g = flatten(*grads)
            if est.solver == "sgd":
                theta = theta - rate * g
                continue
            t += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g**2
            step = rate * math.sqrt(1 - b2**t) / (1 - b1**t)
            theta = theta - step * m / (np.sqrt(v) + eps)
    return theta


@pytest.mark.parametrize("numpy_tier", [False, True])
@pytest.mark.parametrize(
    "solver, reduction, rule, factors",
    [
        # Batch sizes 4, 4, 8, 12, 24: r = 1, 1, 2, 3, 6.
        ("sgd", "mean", "linear", lambda r: r),
        ("sgd", "sum", "sqrt", lambda r: 1 / math.sqrt(r)),
        ("adam", "mean", "auto", math.sqrt),
        ("adam", "sum", "sqrt", math.sqrt),
        ("adam", "unbiased", "linear", lambda r: r),
        ("adam", "mean", None, lambda r: 1.0),
    ],
)
def test_shuffled_epochs_and_the_rate_rules_follow_the_reference(
    monkeypatch, numpy_tier, solver, reduction, rule, factors
):
    if numpy_tier:
        use_numpy_epochs(monkeypatch)
    X, y = _data()
    lr = 0.005 if reduction == "sum" and solver == "sgd" else 0.02
    est = _sgd(solver=solver, gradient_reduction=reduction, learning_rate_init=lr)
    est.set_params(max_iter=1).fit(X, y)  # the weights to start from
    schedule = StepBatchSize({0: 4, 2: 8, 3: 12, 4: "full"})
    sizes = [4, 4, 8, 12, N]
    rates = [lr * factors(b / 4) for b in sizes]
    expected = _reference_run(est, X, y, sizes, rates, seed=7)
    est.set_params(
        warm_start=True,
        shuffle=True,
        random_state=7,
        batch_size=schedule,
        learning_rate_scaling=rule,
        max_iter=5,
    ).fit(X, y)
    assert est.batch_size_curve_[1:] == sizes
    np.testing.assert_allclose(
        flatten(est.coefs_, est.intercepts_), expected, rtol=1e-9, atol=1e-12
    )


# -- partial_fit: one epoch per call, counted by n_iter_ ----------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_counts_one_epoch_per_call_from_n_iter(solver):
    # The oracle sets the batch size by hand before each call; partial_fit
    # continues the optimizer (momentum, Adam's moments) and the shuffles, so
    # the two take the same steps. learning_rate_scaling=None: a hand-set
    # rate would not reach the optimizer partial_fit continues.
    X, y = _data()
    kw = dict(solver=solver, momentum=0.9, shuffle=True, learning_rate_scaling=None)
    schedule = GeometricBatchSize(2, 8, every=2)
    scheduled, by_hand = _sgd(batch_size=schedule, **kw), _sgd(**kw)
    for call in range(6):
        scheduled.partial_fit(X, y)
        by_hand.set_params(batch_size=schedule(call)).partial_fit(X, y)
        assert scheduled.n_iter_ == call + 1
    assert scheduled.batch_size_curve_ == [2, 2, 4, 4, 8, 8]
    assert scheduled.batch_size_ == 8
    for a, b in zip(copied_weights(scheduled), copied_weights(by_hand)):
        np.testing.assert_array_equal(a, b)

    # After a fit of 3 epochs, partial_fit runs epoch 3; a warm-started fit
    # starts n_iter_ and the schedule over.
    est = _sgd(batch_size=schedule, max_iter=3).fit(X, y)
    assert est.batch_size_curve_ == [2, 2, 4]
    est.partial_fit(X, y)
    assert est.batch_size_curve_[-1] == 4 and est.n_iter_ == 4
    est.partial_fit(X, y)
    assert est.batch_size_curve_[-1] == 8
    est.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert est.batch_size_curve_[-2:] == [2, 2] and est.n_iter_ == 2


# -- bad input: a clear error, and nothing changes ----------------------------------


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (0, ValueError, "gives 0 for epoch 2: a batch needs at least one row"),
        (-3, ValueError, "gives -3 for epoch 2"),
        (
            2.5,
            TypeError,
            "gives 2.5 for epoch 2: a schedule must give a positive integer",
        ),
        (np.float64(8.0), TypeError, "must give a positive integer or 'full'"),
        (True, TypeError, "gives True"),
        ("auto", TypeError, "gives 'auto'"),
        (
            N + 1,
            ValueError,
            f"gives {N + 1} for epoch 2, more than the {N} training rows",
        ),
    ],
)
@pytest.mark.parametrize("numpy_tier", [False, True])
def test_a_schedule_giving_a_bad_size_is_refused_before_training(
    monkeypatch, bad, error, match, numpy_tier
):
    if numpy_tier:
        use_numpy_epochs(monkeypatch)
    X, y = _data()
    est = _sgd(max_iter=3).fit(X, y)
    # The bad size comes at the last epoch: refused before the first one.
    est.set_params(batch_size=Returns(bad, at=2), warm_start=True)
    snapshot = Snapshot(est)
    with pytest.raises(error, match=match):
        est.fit(X, y)
    snapshot.assert_matches(est)
    # partial_fit asks for its own epoch only: n_iter_ is 3 here.
    est.set_params(batch_size=Returns(bad, at=3))
    snapshot = Snapshot(est)
    with pytest.raises(error, match=match.replace("epoch 2", "epoch 3")):
        est.partial_fit(X, y)
    snapshot.assert_matches(est)
    est.set_params(batch_size=Returns(bad, at=4)).partial_fit(X, y)  # epoch 3: 4 rows
    assert est.batch_size_curve_[-1] == 4


def test_sizes_beyond_the_epochs_checked_ahead_are_checked_as_they_start(
    monkeypatch,
):
    import skbatchnet._scheduling

    X, y = _data()
    # max_iter may be any int: the first epochs are checked ahead, the
    # others when they start (here the tol rule stops the run after 4).
    est = _sgd(batch_size=GeometricBatchSize(2, 8), max_iter=2**63, tol=1e9)
    est.set_params(n_iter_no_change=2).fit(X, y)
    assert est.batch_size_curve_ == [2, 4, 8, 8]
    monkeypatch.setattr(skbatchnet._scheduling, "CHECKED_AHEAD", 2)
    est = _sgd(max_iter=1).fit(X, y)
    est.set_params(batch_size=Returns(0, at=3), warm_start=True, max_iter=5)
    snapshot = Snapshot(est)
    with pytest.raises(ValueError, match="gives 0 for epoch 3"):
        est.fit(X, y)  # three epochs trained, then rolled back
    snapshot.assert_matches(est)


def test_the_early_stopping_hold_out_counts_and_is_named():
    X, y = _data(n=40)
    # 36 rows train once 10% are held out: 38 is too many for them.
    est = _sgd(batch_size=StepBatchSize({0: 4, 1: 38}), early_stopping=True, max_iter=3)
    with pytest.raises(
        ValueError, match="more than the 36 training rows, the early-stopping"
    ):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")
    est.set_params(batch_size=StepBatchSize({0: 4, 1: 12, 2: "full"})).fit(X, y)
    assert est.batch_size_curve_ == [4, 12, 36]
    assert len(est.validation_scores_) == len(est.batch_size_curve_) == est.n_iter_


def test_a_plain_callable_is_refused_with_the_reason_and_the_fix():
    X, y = _data()
    est = _sgd(max_iter=2).fit(X, y)
    # A snapshot pickles the state, which a lambda would make impossible: it
    # is taken, and compared, with the parameter set back.
    snapshot = Snapshot(est)
    for plain in (lambda epoch: 8, len):
        est.set_params(batch_size=plain)
        with pytest.raises(
            TypeError, match="plain callable.*cannot be pickled.*subclass"
        ):
            est.fit(X, y)
        snapshot.assert_matches(est.set_params(batch_size="auto"))
    est.set_params(batch_size=StepBatchSize)
    with pytest.raises(TypeError, match="schedule class; pass an instance"):
        est.fit(X, y)
    # Anything else that is no schedule gets scikit-learn's parameter error.
    with pytest.raises(ValueError, match="BatchSizeSchedule"):
        est.set_params(batch_size=[8, 16]).fit(X, y)


def test_lbfgs_ignores_a_schedule_as_it_ignores_batch_size():
    X, y = _data()
    kw = dict(solver="lbfgs", max_iter=5)
    fixed = _sgd(**kw).fit(X, y)
    # A size no epoch could take: L-BFGS never asks the schedule.
    scheduled = _sgd(batch_size=StepBatchSize({0: 10**6}), **kw).fit(X, y)
    for a, b in zip(copied_weights(scheduled), copied_weights(fixed)):
        np.testing.assert_array_equal(a, b)
    assert scheduled.batch_size_curve_ == [N] * scheduled.n_iter_


# -- DP-SGD and Poisson batches -----------------------------------------------------

DP = dict(
    solver="sgd",
    batch_sampling="poisson",
    gradient_reduction="unbiased",
    max_gradient_norm=1.0,
    noise_multiplier=1.1,
    unsafe_noise_seed=3,
)


@pytest.mark.filterwarnings("ignore::skbatchnet.privacy.PrivacyWarning")
def test_under_noise_each_epochs_sampling_rate_is_accounted_for(monkeypatch):
    X, y = _data()
    schedule = StepBatchSize({0: 4, 2: 8, 3: 4})
    est = _sgd(batch_size=schedule, max_iter=4, **DP).fit(X, y)
    compiled = copied_weights(est)
    assert est.batch_size_curve_ == [4, 4, 8, 4]
    # ceil(n / b) steps an epoch at q = b / n, runs of one q merged.
    assert est.privacy_ledger_.records == [
        (1.1, 4 / N, 12),
        (1.1, 8 / N, 3),
        (1.1, 4 / N, 6),
    ]
    est.partial_fit(X, y)  # epoch 4: 4 rows, a run of its own after 8
    assert est.privacy_ledger_.records[-1] == (1.1, 4 / N, 12)
    # Under noise a step counts its expected rows, q n = b.
    assert est.n_samples_per_epoch_[:4] == [24, 24, 24, 24]

    # Both tiers draw the same batches and noise, and take the same steps.
    use_numpy_epochs(monkeypatch)
    numpy_est = _sgd(batch_size=schedule, max_iter=4, **DP).fit(X, y)
    for a, b in zip(copied_weights(numpy_est), compiled):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_target_epsilon_refuses_a_schedule():
    X, y = _data()
    params = {k: v for k, v in DP.items() if k != "noise_multiplier"}
    est = _sgd(batch_size=StepBatchSize({0: 4, 2: 8}), **params)
    est.set_params(target_epsilon=3.0, target_delta=1e-3)
    with pytest.raises(
        ValueError,
        match="target_epsilon with batch_size=StepBatchSize.*Set noise_multiplier",
    ):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def test_poisson_batches_without_noise_follow_the_schedule():
    X, y = _data()
    est = _sgd(batch_size=StepBatchSize({0: 3, 1: 12}), batch_sampling="poisson")
    est.set_params(gradient_reduction="unbiased", max_iter=2).fit(X, y)
    assert est.batch_size_curve_ == [3, 12] and est.n_steps_per_epoch_ == [8, 2]


# -- clone, pickle, grid search --------------------------------------------------------


def test_clone_pickle_and_grid_search_with_a_schedule():
    X, y = _data(n=60)
    schedule = GeometricBatchSize(4, 16, every=2)
    est = _sgd(batch_size=schedule, max_iter=5, learning_rate_scaling="linear")
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert twin.batch_size == schedule and twin.batch_size is not schedule
    est.fit(X, y)
    assert "GeometricBatchSize(start=4, maximum=16, every=2, factor=2)" in repr(est)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))
    assert restored.batch_size_curve_ == est.batch_size_curve_ == [4, 4, 8, 8, 16]
    # Both go on alike.
    restored.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))

    grid = GridSearchCV(
        BatchMLPClassifier(
            hidden_layer_sizes=(4,), solver="sgd", max_iter=4, random_state=0
        ),
        {
            "batch_size": [8, StepBatchSize({0: 4, 2: 16})],
            "learning_rate_scaling": [None, "sqrt"],
        },
        cv=2,
    )
    grid.fit(X, (y > 0).astype(int))
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.batch_size in (8, StepBatchSize({0: 4, 2: 16}))
