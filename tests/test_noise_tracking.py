"""The gradient noise scale tracked at every step (track_noise_scale=True).

The oracle is the offline diagnostic,
:func:`skbatchnet.diagnostics.gradient_noise_scale` with
``method='population'``, computed at fixed weights from every row at once:
with weights frozen (a learning rate of 1e-12), each step's estimates of
``|G|^2`` and ``tr(Sigma)`` are unbiased for its ``G2_hat`` and ``tr_hat``
(``skbatchnet._noise_scale``), so their mean over many steps must fall
within a few standard errors of them. Both tiers are checked, and against
each other to rounding.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import Snapshot, use_numpy_epochs
from sklearn.exceptions import ConvergenceWarning

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.diagnostics import gradient_noise_scale


def _data(n=240, d=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = np.sin(X @ rng.randn(d)) + 0.3 * rng.randn(n)
    return X, y


FROZEN = dict(
    hidden_layer_sizes=(12,),
    solver="sgd",
    momentum=0.0,
    learning_rate_init=1e-12,
    alpha=0.0,
    n_iter_no_change=np.inf,
    random_state=0,
    track_noise_scale=True,
)


def _frozen_fit(batch_size, epochs, csr=False, **params):
    """Track over ``epochs`` epochs at a rate of 1e-12, which leaves the
    initial weights as they are; returns the model and the offline answer
    at its weights. ``csr``: the rows as a CSR matrix, two thirds zeros."""
    X, y = _data()
    if csr:
        X = sp.csr_matrix(np.where(np.abs(X) < 1, 0.0, X))
    model = BatchMLPRegressor(
        **{**FROZEN, "max_iter": epochs, "batch_size": batch_size, **params}
    )
    with pytest.warns(ConvergenceWarning):  # ConvergenceWarning: max_iter epochs run
        model.fit(X, y)
    return model, gradient_noise_scale(model, X, y, method="population")


def _mean_and_error(curve):
    values = np.asarray(curve, dtype=float)
    return values.mean(), values.std(ddof=1) / np.sqrt(values.size)


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
@pytest.mark.parametrize(
    "batch_size, csr", [(2, False), (16, False), (60, False), (16, True)]
)
def test_frozen_weights_agree_with_the_population_estimate(
    batch_size, csr, tier, monkeypatch
):
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    model, offline = _frozen_fit(batch_size, 40, csr=csr)
    g2, g2_error = _mean_and_error(model.squared_gradient_curve_)
    trace, trace_error = _mean_and_error(model.gradient_variance_curve_)
    expected_trace = offline.trace_covariance
    expected_g2 = offline.gradient_norm_squared
    assert abs(trace - expected_trace) < 4 * trace_error + 1e-9 * expected_trace
    assert abs(g2 - expected_g2) < 4 * g2_error + 1e-9 * abs(expected_g2)
    # The band is narrow enough to mean something.
    assert trace_error < 0.1 * expected_trace
    assert g2_error < 0.5 * expected_g2
    scales = np.asarray(model.noise_scale_curve_)
    assert np.all((scales > 0) | np.isinf(scales))


@pytest.mark.parametrize("csr", [False, True], ids=["dense", "csr"])
def test_the_two_tiers_track_the_same_estimates(csr, monkeypatch):
    compiled, _ = _frozen_fit(16, 4, csr=csr)
    use_numpy_epochs(monkeypatch)
    numpy, _ = _frozen_fit(16, 4, csr=csr)
    for name in ("squared_gradient_curve_", "gradient_variance_curve_"):
        np.testing.assert_allclose(
            getattr(compiled, name), getattr(numpy, name), rtol=1e-9
        )


@pytest.mark.parametrize("reduction", ["sum", "unbiased"])
def test_every_reduction_estimates_the_same_terms(reduction):
    # t_i = g_i for unit weights whatever the reduction: the same batches give
    # the same estimates (the rate is scaled out).
    mean, _ = _frozen_fit(16, 3)
    other, _ = _frozen_fit(16, 3, gradient_reduction=reduction)
    for name in ("squared_gradient_curve_", "gradient_variance_curve_"):
        np.testing.assert_allclose(getattr(mean, name), getattr(other, name), rtol=1e-7)


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
def test_weighted_sum_with_a_penalty_estimates_the_data_terms(tier, monkeypatch):
    # Under 'sum' with sample weights each term is w_i g_i (w_i = s_i n / S),
    # drawn without replacement: its trace is method='training''s, and the
    # |G|^2 estimate has mean ||G||^2 - tr / n. The penalty is the same for
    # every example and is not a data term: the offline answer is taken at
    # alpha=0, the tracked one trained with alpha=0.3.
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    X, y = _data()
    weights = np.random.RandomState(5).uniform(0.2, 3.0, X.shape[0])
    model = BatchMLPRegressor(
        **{**FROZEN, "max_iter": 40, "batch_size": 16, "alpha": 0.3},
        gradient_reduction="sum",
    )
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y, sample_weight=weights)
    model.set_params(alpha=0.0)
    offline = gradient_noise_scale(model, X, y, weights, method="training")
    expected_trace = offline.trace_covariance
    expected_g2 = offline.gradient_norm_squared - expected_trace / X.shape[0]
    trace, trace_error = _mean_and_error(model.gradient_variance_curve_)
    g2, g2_error = _mean_and_error(model.squared_gradient_curve_)
    assert abs(trace - expected_trace) < 4 * trace_error
    assert abs(g2 - expected_g2) < 4 * g2_error
    assert trace_error < 0.1 * expected_trace and g2_error < 0.5 * expected_g2


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
def test_poisson_batches_estimate_the_same_terms_under_every_reduction(
    tier, monkeypatch
):
    # 'unbiased' divides a Poisson batch by its expected size q n, not by its
    # own: scaled by q n, its terms are g_i as 'mean''s are, and the same
    # batches give the same estimates (no factor (n / q n)^2 per step).
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    poisson = dict(batch_sampling="poisson")
    mean, _ = _frozen_fit(16, 3, **poisson)
    for reduction in ("sum", "unbiased"):
        other, _ = _frozen_fit(16, 3, gradient_reduction=reduction, **poisson)
        for name in ("squared_gradient_curve_", "gradient_variance_curve_"):
            np.testing.assert_allclose(
                getattr(mean, name), getattr(other, name), rtol=1e-7
            )


def test_tracking_while_training_follows_the_offline_estimate():
    # An epoch's tracked values average steps taken at moving weights. The
    # stated tolerance: tr(Sigma), well resolved by every step, lies within
    # 10% of the range of the offline estimates at the epoch's first and
    # last weights; |G|^2, resolved only while it is large against
    # tr(Sigma) / B, within half of that range in the first epoch.
    X, y = _data(n=400)
    model = BatchMLPRegressor(
        hidden_layer_sizes=(16,),
        solver="sgd",
        learning_rate_init=0.02,
        batch_size=20,
        random_state=0,
        track_noise_scale=True,
    )
    model.partial_fit(X, y)
    start = gradient_noise_scale(model, X, y, method="population")
    for epoch in range(6):
        model.partial_fit(X, y)
        end = gradient_noise_scale(model, X, y, method="population")
        low, high = sorted([start.trace_covariance, end.trace_covariance])
        assert 0.9 * low <= model.gradient_variance_curve_[-1] <= 1.1 * high
        if epoch == 0:
            low, high = sorted([start.gradient_norm_squared, end.gradient_norm_squared])
            assert 0.5 * low <= model.squared_gradient_curve_[-1] <= 1.5 * high
        start = end


def test_batch_one_tracks_nothing_and_the_default_tracks_nothing():
    X, y = _data(n=60)
    one = BatchMLPRegressor(
        hidden_layer_sizes=(4,), batch_size=1, max_iter=2, track_noise_scale=True
    )
    with pytest.warns(ConvergenceWarning):
        one.fit(X, y)
    assert np.isnan(one.noise_scale_curve_).all()
    plain = BatchMLPRegressor(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.warns(ConvergenceWarning):
        plain.fit(X, y)
    assert plain.noise_scale_curve_ is None


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(solver="lbfgs"), "lbfgs"),
        (
            dict(
                batch_sampling="poisson",
                noise_multiplier=1.0,
                max_gradient_norm=1.0,
                gradient_reduction="unbiased",
            ),
            "DP noise",
        ),  # fmt: skip
        (dict(max_gradient_norm=1.0), "max_gradient_norm"),
    ],
)
def test_tracking_is_refused_where_it_has_no_meaning_and_changes_nothing(params, match):
    X, y = _data(n=60)
    model = BatchMLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y > 0)
    model.set_params(track_noise_scale=True, **params)
    before = Snapshot(model)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y > 0)
    before.assert_matches(model)


def test_the_display_plots_the_tracked_curves():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skbatchnet.plotting import NoiseScaleDisplay

    model, _ = _frozen_fit(16, 3)
    display = NoiseScaleDisplay.from_estimator(model, terms=True)
    np.testing.assert_array_equal(
        display.batch_line_.get_ydata(), model.batch_size_curve_
    )
    assert len(display.term_lines_) == 2
    plt.close(display.figure_)
    untracked = BatchMLPRegressor(hidden_layer_sizes=(3,), max_iter=1)
    with pytest.warns(ConvergenceWarning):
        untracked.fit(*_data(n=30))
    with pytest.raises(TypeError, match="track_noise_scale=True"):
        NoiseScaleDisplay.from_estimator(untracked)


def test_infinite_estimates_are_marked_at_the_top_of_the_axes_whatever_its_limits():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skbatchnet.plotting import NoiseScaleDisplay

    display = NoiseScaleDisplay(
        [100.0, np.inf, 1e7, np.inf], [8, 16, 32, 64], [1.0] * 4, [1.0] * 4
    ).plot()
    (markers,) = [line for line in display.ax_.lines if line.get_marker() == "^"]
    np.testing.assert_array_equal(markers.get_xdata(), [2, 4])
    # Limits set after plotting (here below the largest finite estimate) keep
    # the markers in view: their height is in axes coordinates.
    display.ax_.set_ylim(1, 1e3)
    heights = display.ax_.transAxes.inverted().transform(
        markers.get_transform().transform(markers.get_xydata())
    )[:, 1]
    assert np.all((heights > 0.9) & (heights < 1.0))
    plt.close(display.figure_)
