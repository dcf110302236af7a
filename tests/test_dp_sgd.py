"""DP-SGD through the estimators: the noise, the account, the guards.

Oracles: dp-accounting called directly for epsilon; the noise's spread
measured against sigma * C on a network of 30,000 parameters; the fit's
counts of steps against ceil(n / batch_size) per epoch. The noisy step
itself is checked against a slow reference in ``test_dp_step.py``.
"""

import math
import pickle
import warnings

import numpy as np
import pytest
from conftest import Snapshot, binary_problem, regression_problem
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.privacy import PrivacyWarning

dp_accounting = pytest.importorskip("dp_accounting")

DP = dict(
    solver="sgd",
    momentum=0.0,
    learning_rate_init=0.1,
    max_gradient_norm=1.0,
    noise_multiplier=1.1,
    batch_sampling="poisson",
    gradient_reduction="unbiased",
    target_delta=1e-5,
)


def private(cls, **params):
    base = dict(hidden_layer_sizes=(8,), max_iter=3, batch_size=16, random_state=0)
    return cls(**{**base, **DP, **params})


def direct_epsilon(sigma, q, steps, delta):
    """The epsilon of SelfComposed(PoissonSampled(q, Gaussian(sigma)), T),
    from dp-accounting's RDP accountant with add/remove adjacency."""
    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)),
        steps,
    )
    return accountant.compose(event).get_epsilon(delta)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)
        yield


# -- the noise -------------------------------------------------------------------


def test_the_noise_has_standard_deviation_sigma_c():
    # One full-batch step (q = 1) of plain SGD at rate 1 under 'sum': the
    # weights move by the gradient plus the noise. The same step without
    # noise, from the same initial weights, gives the gradient.
    rng = np.random.RandomState(0)
    X, y = rng.randn(64, 50), rng.randn(64)
    settings = dict(
        hidden_layer_sizes=(200, 100),  # 30,401 parameters
        solver="sgd",
        momentum=0.0,
        learning_rate_init=1.0,
        alpha=0.0,
        batch_size="full",
        batch_sampling="poisson",
        gradient_reduction="sum",
        max_gradient_norm=0.01,
        max_iter=1,
        random_state=1,
    )
    sigma, C = 2.0, 0.01
    noisy = BatchMLPRegressor(noise_multiplier=sigma, unsafe_noise_seed=5, **settings)
    plain = BatchMLPRegressor(**settings)
    noisy.fit(X, y)
    plain.fit(X, y)
    noise = np.concatenate(
        [(a - b).ravel() for a, b in zip(noisy.coefs_ + noisy.intercepts_,
                                         plain.coefs_ + plain.intercepts_)]
    )  # fmt: skip
    assert noise.size > 30_000
    assert np.std(noise) == pytest.approx(sigma * C, rel=0.02)
    assert abs(np.mean(noise)) < 4 * sigma * C / math.sqrt(noise.size)


def test_the_noise_and_batches_come_from_fresh_entropy():
    X, y = regression_problem(n=60)
    a, b = private(BatchMLPRegressor).fit(X, y), private(BatchMLPRegressor).fit(X, y)
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])
    # random_state still draws the initial weights: one step at rate 0 keeps them.
    c = private(BatchMLPRegressor, learning_rate_init=1e-300, max_iter=1).fit(X, y)
    d = private(BatchMLPRegressor, learning_rate_init=1e-300, max_iter=1).fit(X, y)
    np.testing.assert_array_equal(c.coefs_[0], d.coefs_[0])


def test_the_unsafe_seed_reproduces_the_fit_and_says_it_is_unsafe():
    X, y = regression_problem(n=60)
    model = private(BatchMLPRegressor, unsafe_noise_seed=3)
    with pytest.warns(PrivacyWarning, match="voids the privacy guarantee"):
        a = clone(model).fit(X, y)
    b = clone(model).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    c = private(BatchMLPRegressor, unsafe_noise_seed=4).fit(X, y)
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])


def test_poisson_batches_without_noise_follow_random_state():
    X, y = regression_problem(n=60)
    params = dict(DP, noise_multiplier=0.0, target_delta=None)
    a = BatchMLPRegressor(random_state=2, max_iter=3, **params).fit(X, y)
    b = BatchMLPRegressor(random_state=2, max_iter=3, **params).fit(X, y)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    assert not hasattr(a, "epsilon_")


def test_poisson_batch_sizes_average_q_n():
    # Without noise the rows drawn are counted (under noise, the expected).
    X, y = regression_problem(n=50)
    model = private(
        BatchMLPRegressor,
        batch_size=10,
        max_iter=300,
        noise_multiplier=0.0,
        target_delta=None,
        n_iter_no_change=np.inf,
    )
    model.fit(X, y)
    assert model.n_steps_per_epoch_ == [5] * 300
    sizes = np.asarray(model.n_samples_per_epoch_) / 5  # mean batch size per epoch
    q = 10 / 50
    standard_error = math.sqrt(50 * q * (1 - q) / (5 * 300))
    assert abs(sizes.mean() - 10) < 4 * standard_error


# -- the account -------------------------------------------------------------------


def test_epsilon_matches_dp_accounting_and_counts_empty_batches():
    X, y = regression_problem(n=40)
    # q = 1/40: about a third of the steps have no rows, and they count.
    model = private(BatchMLPRegressor, batch_size=1, max_iter=2).fit(X, y)
    assert model.n_steps_per_epoch_ == [40, 40]
    assert model.privacy_ledger_.steps == 80
    expected = direct_epsilon(1.1, 1 / 40, 80, 1e-5)
    assert model.epsilon_ == pytest.approx(expected, rel=1e-12)
    assert model.noise_multiplier_ == 1.1


def test_epsilon_accumulates_over_partial_fit_calls():
    X, y = binary_problem(n=64)
    model = private(BatchMLPClassifier, batch_size=8)
    for call in range(1, 4):
        model.partial_fit(X, y, classes=[0, 1])
        assert model.privacy_ledger_.steps == 8 * call
        expected = direct_epsilon(1.1, 8 / 64, 8 * call, 1e-5)
        assert model.epsilon_ == pytest.approx(expected, rel=1e-12)
    fitted = private(BatchMLPClassifier, batch_size=8, max_iter=3).fit(X, y)
    assert fitted.epsilon_ == pytest.approx(model.epsilon_, rel=1e-12)
    # The ledger survives pickling, and a refit starts a new one.
    assert pickle.loads(pickle.dumps(model)).privacy_ledger_ == model.privacy_ledger_
    assert model.fit(X, y).privacy_ledger_.steps == 8 * 3


def test_training_on_without_noise_makes_epsilon_infinite():
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor).fit(X, y)
    model.set_params(noise_multiplier=0.0, warm_start=True).fit(X, y)
    assert model.epsilon_ == math.inf
    fresh = model.set_params(warm_start=False).fit(X, y)
    assert not hasattr(fresh, "epsilon_") and not hasattr(fresh, "privacy_ledger_")


def test_target_epsilon_calibrates_the_noise_multiplier():
    X, y = regression_problem(n=80)
    model = private(
        BatchMLPRegressor, noise_multiplier=0.0, target_epsilon=2.0, max_iter=4
    ).fit(X, y)
    assert model.noise_multiplier == 0.0 and model.target_epsilon == 2.0
    assert model.noise_multiplier_ > 0
    assert model.epsilon_ <= 2.0
    assert model.epsilon_ == pytest.approx(2.0, abs=1e-3)
    steps = 4 * math.ceil(80 / 16)
    assert model.epsilon_ == pytest.approx(
        direct_epsilon(model.noise_multiplier_, 16 / 80, steps, 1e-5), rel=1e-12
    )


def test_epsilon_is_read_at_the_fits_delta_and_computed_once(monkeypatch):
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor).fit(X, y)
    assert "epsilon_" not in vars(model)  # computed when read
    first = model.epsilon_
    assert first == pytest.approx(
        direct_epsilon(1.1, 16 / 40, model.privacy_ledger_.steps, 1e-5), rel=1e-12
    )
    # A later set_params does not change what the fit spent.
    model.set_params(target_delta=1e-9)
    assert model.epsilon_ == first

    def no_accountant(*args):
        raise AssertionError("the accountant ran again")

    monkeypatch.setattr("skbatchnet.privacy._make_accountant", no_accountant)
    assert model.epsilon_ == first
    assert pickle.loads(pickle.dumps(model)).epsilon_ == first
    with pytest.raises(AssertionError, match="ran again"):
        model.privacy_ledger_.epsilon(1e-6)  # another delta: computed
    with pytest.raises(AttributeError, match="not trained with DP noise"):
        _ = BatchMLPRegressor().epsilon_


def test_epsilon_is_none_without_target_delta():
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor, target_delta=None).fit(X, y)
    assert model.epsilon_ is None
    assert model.privacy_ledger_.epsilon(1e-5) == pytest.approx(
        direct_epsilon(1.1, 16 / 40, model.privacy_ledger_.steps, 1e-5), rel=1e-12
    )


# -- what the guarantee needs --------------------------------------------------------


def test_noise_runs_max_iter_epochs_without_stopping_or_warning():
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor, tol=1e9, n_iter_no_change=1, max_iter=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert model.n_iter_ == 6


def test_a_private_classifier_warns_that_classes_come_from_the_data():
    X, y = binary_problem(n=40)
    with pytest.warns(PrivacyWarning, match="classes_ is learned from y"):
        private(BatchMLPClassifier).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyWarning)
        private(BatchMLPClassifier).partial_fit(X, y, classes=[0, 1])


REFUSED = [
    ({"max_gradient_norm": None}, "max_gradient_norm"),
    ({"batch_sampling": "epoch"}, "batch_sampling='poisson'"),
    ({"gradient_reduction": "mean"}, "'unbiased' or 'sum'"),
    ({"early_stopping": True}, "early_stopping"),
    ({"learning_rate": "adaptive"}, "learning_rate='adaptive'"),
    ({"target_epsilon": 3.0}, "noise_multiplier > 0"),
    ({"noise_multiplier": 0.0, "target_epsilon": 3.0, "target_delta": None}, "delta"),
    ({"noise_multiplier": 0.0, "target_epsilon": 3.0, "warm_start": True}, "warm_st"),
    ({"target_delta": 0.05}, "target_delta=0.05"),
    ({"solver": "lbfgs", "noise_multiplier": 0.0}, "lbfgs"),
]


@pytest.mark.parametrize("change, message", REFUSED)
def test_refused_settings_change_nothing(change, message):
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor).fit(X, y)
    snapshot = Snapshot(model)
    model.set_params(**change)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)
    model.set_params(**{k: private(BatchMLPRegressor).get_params()[k] for k in change})
    snapshot.assert_matches(model)


def test_weights_above_one_and_balanced_classes_are_refused():
    X, y = binary_problem(n=40)
    model = private(BatchMLPClassifier).fit(X, y)
    snapshot = Snapshot(model)
    with pytest.raises(ValueError, match="weights above 1"):
        model.fit(X, y, sample_weight=np.full(40, 1.5))
    with pytest.raises(ValueError, match="weights above 1"):
        model.set_params(class_weight={0: 1.0, 1: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight='balanced'"):
        model.set_params(class_weight="balanced").fit(X, y)
    model.set_params(class_weight=None)
    snapshot.assert_matches(model)
    # Weights of at most 1 are fine.
    model.fit(X, y, sample_weight=np.linspace(0.1, 1.0, 40))


def test_target_epsilon_is_refused_by_partial_fit():
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor, noise_multiplier=0.0, target_epsilon=3.0)
    with pytest.raises(ValueError, match="partial_fit"):
        model.partial_fit(X, y)
    assert not hasattr(model, "coefs_")


@pytest.mark.parametrize("C", [0.0, -1.0, float("nan")])
def test_a_non_positive_clipping_norm_is_refused(C):
    X, y = regression_problem(n=40)
    with pytest.raises(ValueError, match="max_gradient_norm"):
        private(BatchMLPRegressor, max_gradient_norm=C).fit(X, y)


def test_target_delta_must_be_below_one_over_n():
    X, y = regression_problem(n=40)
    for delta in (1 / 40, 1.5 / 40):
        with pytest.raises(ValueError, match="target_delta"):
            private(BatchMLPRegressor, target_delta=delta).fit(X, y)
    private(BatchMLPRegressor, target_delta=0.99 / 40).fit(X, y)


def test_any_positive_noise_multiplier_is_private():
    X, y = regression_problem(n=40)
    model = private(BatchMLPRegressor, noise_multiplier=0.3).fit(X, y)
    assert model.noise_multiplier_ == 0.3 and model.privacy_ledger_.steps == 9
    with pytest.raises(ValueError, match="max_gradient_norm"):
        private(BatchMLPRegressor, noise_multiplier=0.3, max_gradient_norm=None).fit(
            X, y
        )


def test_recording_steps_leaves_the_earlier_ledger_as_it_was():
    # A fit that fails after recording must be able to restore the ledger it
    # started with: record_steps works on a copy.
    from skbatchnet._private import record_steps
    from skbatchnet.privacy import PrivacyLedger

    ledger = PrivacyLedger().record(1.0, 0.1, 10)
    longer = record_steps(ledger, 1.0, 0.1, 5)
    assert ledger.records == [(1.0, 0.1, 10)]
    assert longer.records == [(1.0, 0.1, 15)]


def test_under_noise_rows_count_as_expected_not_as_drawn():
    # A Poisson batch's size tells whether an example was drawn: t_, the
    # epochs' row counts and the averaging start see q n per step instead.
    X, y = regression_problem(n=50)
    model = private(BatchMLPRegressor, batch_size=10, max_iter=4, average=25)
    model.fit(X, y)
    assert model.n_samples_per_epoch_ == [50] * 4
    assert model.t_ == 200
    # Averaging starts once 25 rows are counted: from the third step on, in
    # both tiers alike (the numpy tier is the specification).
    averages = model._weight_average.n_averaged
    assert averages == 4 * 5 - 2


def test_training_without_noise_around_private_training_makes_epsilon_inf():
    X, y = regression_problem(n=40)
    # Before: three epochs without noise, then a private warm start.
    plain = dict(DP, noise_multiplier=0.0, target_delta=None)
    model = BatchMLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0)
    model.set_params(**plain).fit(X, y)
    assert not hasattr(model, "epsilon_")
    model.set_params(**DP, warm_start=True, max_iter=1).fit(X, y)
    assert model.epsilon_ == math.inf
    # After: a private fit continued by L-BFGS without noise.
    model = private(BatchMLPRegressor).fit(X, y)
    assert math.isfinite(model.epsilon_)
    model.set_params(
        solver="lbfgs",
        warm_start=True,
        noise_multiplier=0.0,
        batch_sampling="epoch",
        max_gradient_norm=None,
        max_iter=2,
    ).fit(X, y)
    assert model.epsilon_ == math.inf
