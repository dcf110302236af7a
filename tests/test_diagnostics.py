"""The gradient noise scale: against an explicit oracle, a closed form, and
for chunking, pipelines, weights and input validation."""

import doctest
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

import skbatchnet.diagnostics
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor
from skbatchnet.diagnostics import NoiseScale, gradient_noise_scale
from skbatchnet.per_example import per_example_gradients


def _fit(estimator, X, y, **fit_params):
    # Every fit seeded, so no test depends on a lucky random start.
    if estimator.get_params().get("random_state", 0) is None:
        estimator.set_params(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **fit_params)


def _classification(n=40, n_features=5, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    y = rng.randint(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    return X, y


def _oracle(estimator, X, Y, sample_weight=None):
    """The estimator of the docstring from materialized per-example gradients,
    with numpy's weighted covariance for the trace."""
    n = X.shape[0]
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    S = s.sum()
    net = estimator._network()
    coef_grads, intercept_grads = per_example_gradients(
        net, X, Y, alpha=estimator.alpha, total_weight=S
    )
    flat = np.hstack([g.reshape(n, -1) for g in coef_grads + intercept_grads])
    G_hat = np.average(flat, axis=0, weights=s)
    # The weighted mean of the g_i is the gradient of the objective.
    _, coef_grad, intercept_grad = net.batch_gradient(
        X, Y, None if sample_weight is None else s, alpha=estimator.alpha
    )
    assert_allclose(np.hstack([g.ravel() for g in coef_grad + intercept_grad]), G_hat)
    keep = s > 0
    trace = np.trace(
        np.atleast_2d(np.cov(flat[keep], rowvar=False, fweights=s[keep].astype(int)))
    )
    G2 = G_hat @ G_hat - trace / S
    return trace, G2, (trace / G2 if G2 > 0 else np.inf)


@pytest.mark.parametrize("weighted", [False, True])
def test_classifier_matches_materialized_oracle(weighted):
    X, y = _classification()
    clf = BatchMLPClassifier(
        hidden_layer_sizes=(6, 4),
        activation="tanh",
        alpha=0.3,
        max_iter=3,
        batch_size=8,
        random_state=0,
    )
    sample_weight = np.random.RandomState(1).randint(0, 4, X.shape[0])
    sample_weight[:3] = 1
    sample_weight = sample_weight if weighted else None
    _fit(clf, X, y)
    Y = clf._label_binarizer.transform(y).astype(float)
    trace, G2, b = _oracle(clf, X, Y, sample_weight)
    assert G2 > 0
    result = gradient_noise_scale(clf, X, y, sample_weight=sample_weight)
    assert isinstance(result, NoiseScale)
    assert_allclose(result.trace_covariance, trace, rtol=1e-10)
    assert_allclose(result.gradient_norm_squared, G2, rtol=1e-10)
    assert_allclose(result.b_simple, b, rtol=1e-10)
    assert result.n_samples == X.shape[0]
    S = X.shape[0] if sample_weight is None else sample_weight.sum()
    assert result.total_weight == S
    assert_allclose(result.mean_gradient_norm_squared, G2 + trace / S, rtol=1e-10)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_matches_materialized_oracle(loss):
    rng = np.random.RandomState(2)
    X = rng.randn(30, 4)
    y = np.abs(rng.randn(30, 2))
    reg = BatchMLPRegressor(
        hidden_layer_sizes=(5,),
        activation="relu",
        alpha=0.1,
        loss=loss,
        max_iter=2,
        random_state=0,
    )
    _fit(reg, X, y)
    trace, G2, b = _oracle(reg, X, y)
    assert G2 > 0
    result = gradient_noise_scale(reg, X, y)
    assert_allclose(
        [result.trace_covariance, result.gradient_norm_squared, result.b_simple],
        [trace, G2, b],
        rtol=1e-10,
    )


def test_binary_classifier_matches_oracle():
    X, y = _classification(n_classes=2, seed=4)
    labels = np.array(["no", "yes"])[y]
    # Seeded: at some random starts the |G|^2 estimate is negative (B = inf).
    clf = BatchMLPClassifier(hidden_layer_sizes=(3,), max_iter=1, random_state=0)
    clf = _fit(clf, X, labels)
    Y = clf._label_binarizer.transform(labels).astype(float)
    assert Y.shape[1] == 1  # binary_log_loss with one output
    trace, G2, b = _oracle(clf, X, Y)
    assert G2 > 0
    result = gradient_noise_scale(clf, X, labels)
    assert_allclose(
        [result.trace_covariance, result.gradient_norm_squared, result.b_simple],
        [trace, G2, b],
        rtol=1e-10,
    )


def test_integer_weights_equal_repeated_rows():
    X, y = _classification(seed=3)
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(5,), alpha=0.2, max_iter=2), X, y)
    weights = np.random.RandomState(0).randint(0, 4, X.shape[0])
    weights[:3] = 1  # every class keeps a row
    weighted = gradient_noise_scale(clf, X, y, sample_weight=weights)
    rows = np.repeat(np.arange(X.shape[0]), weights)
    repeated = gradient_noise_scale(clf, X[rows], y[rows])
    assert weighted.total_weight == repeated.n_samples == weights.sum()
    for field in ("b_simple", "trace_covariance", "gradient_norm_squared"):
        assert_allclose(getattr(weighted, field), getattr(repeated, field), rtol=1e-10)


def test_class_weight_acts_as_sample_weight():
    X, y = _classification(seed=5)
    class_weight = {0: 2.0, 1: 1.0, 2: 3.0}
    clf = _fit(
        BatchMLPClassifier(hidden_layer_sizes=(4,), class_weight=class_weight), X, y
    )
    with_class_weight = gradient_noise_scale(clf, X, y)
    clf.class_weight = None
    explicit = gradient_noise_scale(
        clf, X, y, sample_weight=compute_sample_weight(class_weight, y)
    )
    assert_allclose(with_class_weight.b_simple, explicit.b_simple, rtol=1e-12)


def test_uses_current_weights():
    X, y = _classification()
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(4,), max_iter=1), X, y)
    before = gradient_noise_scale(clf, X, y)
    clf.coefs_ = [2.0 * W for W in clf.coefs_]
    after = gradient_noise_scale(clf, X, y)
    assert after.b_simple != before.b_simple
    trace, _, b = _oracle(clf, X, clf._label_binarizer.transform(y).astype(float))
    assert_allclose([after.trace_covariance, after.b_simple], [trace, b], rtol=1e-10)


def test_closed_form_linear_model():
    """A linear model y = x.w* + eps with x ~ N(0, I_d), eps ~ N(0, s^2).

    The network x -> h = x.v -> yhat = u h (identity activation, u = 1, zero
    biases, alpha = 0) has residual r = yhat - y = x.D - eps with D = v - w*,
    and per-example gradient (d loss / d v, d / d b1, d / d u, d / d b2) =
    (r x, r, (x.v) r, r). With Isserlis' E[(a.x)^2 (b.x)^2] = |a|^2 |b|^2 +
    2 (a.b)^2:

        G = (D, 0, v.D, 0),           |G|^2 = |D|^2 + (v.D)^2
        E|g|^2 = (d+2)|D|^2 + d s^2           (r x)
               + 2 (|D|^2 + s^2)              (both biases)
               + |v|^2 |D|^2 + 2 (v.D)^2 + s^2 |v|^2     ((x.v) r)
        tr(Sigma) = E|g|^2 - |G|^2
                  = (d+3)|D|^2 + (d+2) s^2 + |v|^2 (|D|^2 + s^2) + (v.D)^2
    """
    d, s, n = 4, 0.5, 200_000
    w_star = np.array([1.0, -0.5, 0.25, 0.0])
    D = np.array([0.3, 0.2, -0.4, 0.1])
    v = w_star + D
    G2 = D @ D + (v @ D) ** 2
    trace = (d + 3) * (D @ D) + (d + 2) * s**2 + (v @ v) * (D @ D + s**2) + (v @ D) ** 2

    rng = np.random.RandomState(0)
    X = rng.randn(n, d)
    y = X @ w_star + s * rng.randn(n)
    reg = BatchMLPRegressor(
        hidden_layer_sizes=(1,), activation="identity", alpha=0.0, max_iter=1
    )
    _fit(reg, X[:100], y[:100])
    reg.coefs_ = [v.reshape(d, 1), np.ones((1, 1))]
    reg.intercepts_ = [np.zeros(1), np.zeros(1)]

    result = gradient_noise_scale(reg, X, y)
    # About 4 standard errors (0.45%, 1%, 0.75% over 20 seeds).
    assert_allclose(result.trace_covariance, trace, rtol=0.02)
    assert_allclose(result.gradient_norm_squared, G2, rtol=0.04)
    assert_allclose(result.b_simple, trace / G2, rtol=0.03)


def test_chunked_equals_unchunked():
    X, y = load_digits(return_X_y=True)
    X = X[:500] / 16.0
    y = y[:500]
    clf = _fit(BatchMLPClassifier(alpha=0.01, max_iter=2, random_state=0), X, y)
    weights = np.random.RandomState(0).rand(X.shape[0]) * 2
    for sample_weight in (None, weights):
        full = gradient_noise_scale(clf, X, y, sample_weight=sample_weight)
        with config_context(working_memory=0.01):  # a few rows per chunk
            assert clf._network().chunk_rows() < 10
            chunked = gradient_noise_scale(clf, X, y, sample_weight=sample_weight)
        for field in ("b_simple", "trace_covariance", "gradient_norm_squared"):
            assert_allclose(getattr(chunked, field), getattr(full, field), rtol=1e-10)


def test_sparse_equals_dense():
    X, y = _classification(n=50, n_features=8, seed=6)
    X[np.random.RandomState(0).rand(*X.shape) < 0.5] = 0.0
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(5,), max_iter=2), X, y)
    dense = gradient_noise_scale(clf, X, y)
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        with config_context(working_memory=0.001):
            sparse = gradient_noise_scale(clf, fmt(X), y)
        assert_allclose(sparse.b_simple, dense.b_simple, rtol=1e-10)


def test_float32_weights():
    X, y = _classification(seed=7)
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(5,)), X.astype(np.float32), y)
    assert clf.coefs_[0].dtype == np.float32
    result = gradient_noise_scale(clf, X.astype(np.float32), y)
    reference = gradient_noise_scale(clf, X, y)
    assert_allclose(result.b_simple, reference.b_simple, rtol=1e-5)


def test_pipeline():
    X, y = _classification(seed=8)
    X = 10 * X + 3
    pipe = _fit(
        make_pipeline(StandardScaler(), BatchMLPClassifier(hidden_layer_sizes=(4,))),
        X,
        y,
    )
    result = gradient_noise_scale(pipe, X, y)
    direct = gradient_noise_scale(pipe[-1], pipe[0].transform(X), y)
    assert result == direct


def test_infinite_when_gradient_estimate_not_positive():
    # At (nearly) the least-squares minimum the noise dominates the gradient.
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    y = X @ np.array([1.0, 2.0, -1.0]) + 0.1 * rng.randn(200)
    reg = _fit(
        BatchMLPRegressor(
            hidden_layer_sizes=(1,),
            activation="identity",
            solver="lbfgs",
            alpha=0.0,
            tol=1e-12,
            max_iter=500,
        ),
        X,
        y,
    )
    result = gradient_noise_scale(reg, X, y)
    assert result.gradient_norm_squared <= 0
    assert result.b_simple == np.inf
    assert result.trace_covariance > 0


def test_not_fitted():
    X, y = _classification()
    with pytest.raises(NotFittedError):
        gradient_noise_scale(BatchMLPClassifier(), X, y)
    with pytest.raises(NotFittedError):
        gradient_noise_scale(make_pipeline(StandardScaler(), BatchMLPRegressor()), X, y)


def test_input_validation():
    X, y = _classification()
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(3,), max_iter=1), X, y)
    with pytest.raises(ValueError, match="features"):
        gradient_noise_scale(clf, X[:, :-1], y)
    pipe = _fit(make_pipeline(StandardScaler(), BatchMLPClassifier(max_iter=1)), X, y)
    with pytest.raises(ValueError, match="features"):
        gradient_noise_scale(pipe, X[:, :-1], y)
    with pytest.raises(ValueError, match="labels"):
        gradient_noise_scale(clf, X, y + 5)
    with pytest.raises(ValueError, match="greater than 1"):
        gradient_noise_scale(clf, X[:1], y[:1])
    with pytest.raises(ValueError, match="greater than 1"):
        gradient_noise_scale(clf, X, y, sample_weight=np.full(X.shape[0], 0.01))
    reg = _fit(BatchMLPRegressor(hidden_layer_sizes=(3,), max_iter=1), X, y * 1.0)
    with pytest.raises(ValueError, match="outputs"):
        gradient_noise_scale(reg, X, np.c_[y, y])
    with pytest.raises(TypeError, match="BatchMLP"):
        gradient_noise_scale(StandardScaler().fit(X), X, y)


def test_docstring_examples():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testmod(skbatchnet.diagnostics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
