"""DataParallel with per-example clipping, 'unbiased' and DP-SGD.

The oracle is the wrapped estimator fitted in memory on the concatenated data:
with ``strategy='gradient'`` the workers return their blocks' clipped sums, the
client draws the Poisson batches and adds the noise from the one Generator
that the in-memory fit uses, so the two fits agree to rounding given the same
``unsafe_noise_seed``. Every test shares the module-scoped ``client`` fixture
of conftest (two single-threaded worker processes on the loopback).
"""

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dp_accounting")

import dask.array as da  # noqa: E402
from sklearn.base import clone  # noqa: E402

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor  # noqa: E402
from skbatchnet.dask import DataParallel  # noqa: E402
from skbatchnet.privacy import PrivacyWarning  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::skbatchnet.privacy.PrivacyWarning")

N = 90
ROW_CHUNKS = (40, 30, 20)  # uneven, and not multiples of the batches
RTOL = 1e-10
DP = dict(
    batch_sampling="poisson",
    noise_multiplier=1.1,
    max_gradient_norm=0.5,
    unsafe_noise_seed=7,
    target_delta=1e-3,
)


def _data(n=N, kind="regression"):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, 5))
    z = X @ rng.normal(size=5)
    y = z + 0.3 * np.sin(3 * X[:, 0]) if kind == "regression" else np.digitize(z, [0])
    # Weights at most 1, as noise needs, some of them 0.
    return X, y, rng.uniform(0, 1, size=n) * (rng.uniform(size=n) > 0.1)


def _dask(X, y, w=None, chunks=ROW_CHUNKS):
    dX = da.from_array(X, chunks=(chunks, -1))
    dy = da.from_array(y, chunks=chunks)
    return dX, dy, None if w is None else da.from_array(w, chunks=chunks)


def _flat(estimator):
    return np.concatenate([a.ravel() for a in estimator.coefs_ + estimator.intercepts_])


def _assert_same_fit(actual, expected):
    a, b = _flat(actual), _flat(expected)
    assert np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    np.testing.assert_allclose(actual.loss_curve_, expected.loss_curve_, rtol=RTOL)
    assert (actual.n_iter_, actual.t_) == (expected.n_iter_, expected.t_)
    for name in ("clip_fraction_curve_", "noise_multiplier_", "epsilon_"):
        assert getattr(actual, name, None) == getattr(expected, name, None), name
    ledger, oracle = (getattr(e, "privacy_ledger_", None) for e in (actual, expected))
    assert getattr(ledger, "records", None) == getattr(oracle, "records", None)


CASES = {
    # Epoch batches: clipping with 'unbiased' and weights.
    "clipped unbiased": dict(max_gradient_norm=0.3, gradient_reduction="unbiased"),
    # Poisson batches without noise: drawn from random_state.
    "poisson unbiased": dict(
        batch_sampling="poisson", max_gradient_norm=0.3, gradient_reduction="unbiased"
    ),
    # DP-SGD dividing by q S, its noise sigma C / (q S).
    "dp unbiased": dict(DP, gradient_reduction="unbiased"),
    # DP-SGD under 'sum': the penalty at its expectation q S; Adam.
    "dp sum adam": dict(DP, gradient_reduction="sum", solver="adam"),
    # Calibrated to an epsilon: noise_multiplier_ is fitted.
    "dp target_epsilon": dict(
        DP, noise_multiplier=0.0, target_epsilon=8.0, gradient_reduction="unbiased"
    ),
}


@pytest.mark.parametrize("settings", list(CASES.values()), ids=list(CASES))
def test_clipped_and_private_fits_follow_the_in_memory_fit(client, settings):
    X, y, w = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(6,),
        batch_size=16,
        max_iter=3,
        alpha=0.05,
        learning_rate_init=0.05,
        random_state=0,
        **settings,
    )
    expected = clone(estimator).fit(X, y, sample_weight=w)
    model = DataParallel(estimator).fit(*_dask(X, y, w))
    _assert_same_fit(model.estimator_, expected)
    if settings.get("max_gradient_norm"):
        assert 0 < max(expected.clip_fraction_curve_) < 1  # C does clip, not all
    if "target_delta" in settings:
        assert np.isfinite(expected.epsilon_) and expected.epsilon_ > 0
        assert expected.privacy_ledger_.steps == 3 * 6  # ceil(90 / 16) per epoch


def test_empty_poisson_batches_step_on_noise_and_penalty(client):
    # Batch size 1 on 24 rows: a third of the Poisson batches are empty. They
    # step (on the noise and the penalty) without a round trip to the cluster.
    X, y, w = _data(24)
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(4,),
        batch_size=1,
        max_iter=2,
        alpha=0.1,
        learning_rate_init=0.05,
        random_state=0,
        gradient_reduction="unbiased",
        **DP,
    )
    expected = clone(estimator).fit(X, y, sample_weight=w)
    model = DataParallel(estimator).fit(*_dask(X, y, w, chunks=(10, 14)))
    _assert_same_fit(model.estimator_, expected)
    steps = expected.privacy_ledger_.steps
    assert steps == sum(expected.n_steps_per_epoch_) == 2 * 24
    assert model.traffic_["steps"] < steps - 5  # empty batches: no round trip


def test_a_private_classifier_warns_that_classes_come_from_the_data(client):
    X, y, w = _data(kind="classification")
    estimator = BatchMLPClassifier(
        hidden_layer_sizes=(4,),
        batch_size=32,
        max_iter=2,
        random_state=0,
        gradient_reduction="unbiased",
        **DP,
    )
    expected = clone(estimator).fit(X, y, sample_weight=w)
    with pytest.warns(PrivacyWarning, match="classes_ is learned from y"):
        model = DataParallel(estimator).fit(*_dask(X, y, w))
    _assert_same_fit(model.estimator_, expected)
    np.testing.assert_array_equal(model.classes_, expected.classes_)


PRIVATE = {**DP, "gradient_reduction": "unbiased"}


@pytest.mark.parametrize(
    "settings, strategy, largest_weight, match",
    [
        ({"batch_sampling": "poisson"}, "average", 1, r"batch_sampling='poisson'"),
        (PRIVATE, "average", 1, r"noise_multiplier=1.1"),
        ({**PRIVATE, "noise_multiplier": 0.0, "target_epsilon": 3.0}, "average", 1,
         r"target_epsilon=3.0"),
        # The largest weight, computed on the workers.
        (PRIVATE, "gradient", 1.5, r"weights above 1"),
        ({**PRIVATE, "target_delta": 0.1}, "gradient", 1,
         r"target_delta=0.1 with 90 training rows"),
    ],
)  # fmt: skip
def test_refusals_name_the_fix_and_change_nothing(
    client, settings, strategy, largest_weight, match
):
    X, y, w = _data()
    model = DataParallel(
        BatchMLPRegressor(hidden_layer_sizes=(3,), max_iter=1, random_state=0),
        strategy=strategy,
    ).fit(*_dask(X, y))
    fitted, before, traffic = model.estimator_, _flat(model.estimator_), model.traffic_
    model.set_params(**{f"estimator__{k}": v for k, v in settings.items()})
    w = w * (largest_weight / w.max())
    with pytest.raises(ValueError, match=match) as info:
        model.fit(*_dask(X, y, w))
    if strategy == "average":
        assert "strategy='gradient'" in str(info.value)
        assert "Poisson batches drawn from the whole set" in str(info.value)
    assert model.estimator_ is fitted and model.traffic_ is traffic
    np.testing.assert_array_equal(_flat(model.estimator_), before)
