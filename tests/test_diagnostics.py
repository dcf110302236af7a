"""The gradient noise scale: against an explicit oracle, a closed form, and
for chunking, pipelines, weights and input validation."""

import doctest

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn import config_context
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
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
    return estimator.fit(X, y, **fit_params)


def _classification(n=40, n_features=5, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    y = rng.randint(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    return X, y


def _materialized(estimator, X, Y, sample_weight=None):
    """Per-example gradients as rows, the weights, and grad E."""
    n = X.shape[0]
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    net = estimator._network()
    coef_grads, intercept_grads = per_example_gradients(
        net, X, Y, alpha=estimator.alpha, total_weight=s.sum()
    )
    flat = np.hstack([g.reshape(n, -1) for g in coef_grads + intercept_grads])
    G = np.average(flat, axis=0, weights=s)
    # The weighted mean of the g_i is the gradient of the objective.
    _, coef_grad, intercept_grad = net.batch_gradient(
        X, Y, None if sample_weight is None else s, alpha=estimator.alpha
    )
    assert_allclose(np.hstack([g.ravel() for g in coef_grad + intercept_grad]), G)
    return flat, s, G


def _oracle(estimator, X, Y, sample_weight=None, method="population"):
    """The formulas of the docstring from materialized per-example gradients:
    numpy's weighted covariance for the population trace, the rows' terms
    u_i written out for the training one."""
    flat, s, G = _materialized(estimator, X, Y, sample_weight)
    n, S = flat.shape[0], s.sum()
    if method == "population":
        keep = s > 0
        trace = np.trace(
            np.atleast_2d(
                np.cov(flat[keep], rowvar=False, fweights=s[keep].astype(int))
            )
        )
        G2 = G @ G - trace / S
        return trace, G2, (trace / G2 if G2 > 0 else np.inf)
    w = s * n / S
    if estimator.gradient_reduction == "mean":
        u = w[:, None] * (flat - G)
    else:
        u = w[:, None] * flat - G
    trace = np.sum(u * u) / (n - 1)
    return trace, G @ G, trace / (G @ G + trace / n)


@pytest.mark.parametrize("method", ["training", "population"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_classifier_matches_materialized_oracle(weighted, reduction, method):
    X, y = _classification()
    clf = BatchMLPClassifier(
        hidden_layer_sizes=(6, 4),
        activation="tanh",
        alpha=0.3,
        max_iter=3,
        batch_size=8,
        gradient_reduction=reduction,
        learning_rate_init=1e-3 if reduction == "mean" else 1e-4,
        random_state=0,
    )
    sample_weight = np.random.RandomState(1).randint(0, 4, X.shape[0])
    sample_weight[:3] = 1
    sample_weight = sample_weight if weighted else None
    _fit(clf, X, y, sample_weight=sample_weight)
    Y = clf._label_binarizer.transform(y).astype(float)
    trace, G2, b = _oracle(clf, X, Y, sample_weight, method)
    assert G2 > 0
    result = gradient_noise_scale(clf, X, y, sample_weight=sample_weight, method=method)
    assert isinstance(result, NoiseScale)
    assert result.method == method
    assert_allclose(result.trace_covariance, trace, rtol=1e-10)
    assert_allclose(result.gradient_norm_squared, G2, rtol=1e-10)
    assert_allclose(result.b_simple, b, rtol=1e-10)
    assert result.n_samples == X.shape[0]
    S = X.shape[0] if sample_weight is None else sample_weight.sum()
    assert result.total_weight == S
    mean_G2 = G2 + trace / S if method == "population" else G2
    assert_allclose(result.mean_gradient_norm_squared, mean_G2, rtol=1e-10)
    assert_allclose(result.noise_to_signal(result.b_simple), 1.0, rtol=1e-10)


@pytest.mark.parametrize("method", ["training", "population"])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_matches_materialized_oracle(loss, method):
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
    trace, G2, b = _oracle(reg, X, y, method=method)
    assert G2 > 0
    result = gradient_noise_scale(reg, X, y, method=method)
    assert_allclose(
        [result.trace_covariance, result.gradient_norm_squared, result.b_simple],
        [trace, G2, b],
        rtol=1e-10,
    )


@pytest.mark.parametrize("method", ["training", "population"])
def test_binary_classifier_matches_oracle(method):
    X, y = _classification(n_classes=2, seed=4)
    labels = np.array(["no", "yes"])[y]
    # Seeded: at some random starts the population |G|^2 estimate is negative.
    clf = BatchMLPClassifier(hidden_layer_sizes=(3,), max_iter=1, random_state=0)
    clf = _fit(clf, X, labels)
    Y = clf._label_binarizer.transform(labels).astype(float)
    assert Y.shape[1] == 1  # binary_log_loss with one output
    trace, G2, b = _oracle(clf, X, Y, method=method)
    assert G2 > 0
    result = gradient_noise_scale(clf, X, labels, method=method)
    assert_allclose(
        [result.trace_covariance, result.gradient_norm_squared, result.b_simple],
        [trace, G2, b],
        rtol=1e-10,
    )


def test_integer_weights_equal_repeated_rows():
    """For the population estimate weights are frequency weights; training
    draws rows whatever their weight, so for it they are not."""
    X, y = _classification(seed=3)
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(5,), alpha=0.2, max_iter=2), X, y)
    weights = np.random.RandomState(0).randint(0, 4, X.shape[0])
    weights[:3] = 1  # every class keeps a row
    weighted = gradient_noise_scale(
        clf, X, y, sample_weight=weights, method="population"
    )
    rows = np.repeat(np.arange(X.shape[0]), weights)
    repeated = gradient_noise_scale(clf, X[rows], y[rows], method="population")
    assert weighted.total_weight == repeated.n_samples == weights.sum()
    for field in ("b_simple", "trace_covariance", "gradient_norm_squared"):
        assert_allclose(getattr(weighted, field), getattr(repeated, field), rtol=1e-10)
    training = gradient_noise_scale(clf, X, y, sample_weight=weights)
    assert training.n_samples == X.shape[0]
    assert not np.isclose(
        training.b_simple, gradient_noise_scale(clf, X[rows], y[rows]).b_simple
    )


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
    Y = clf._label_binarizer.transform(y).astype(float)
    trace, _, b = _oracle(clf, X, Y, method="training")
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

    result = gradient_noise_scale(reg, X, y, method="population")
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


def test_population_infinite_training_finite_near_minimum():
    # At (nearly) the least-squares minimum the noise dominates the gradient:
    # the population estimate of |G|^2 is not positive, while grad E is known
    # and the training noise scale is finite, below n.
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
    result = gradient_noise_scale(reg, X, y, method="population")
    assert result.gradient_norm_squared <= 0
    assert result.b_simple == np.inf
    assert result.trace_covariance > 0
    assert result.noise_to_signal(10) == np.inf
    training = gradient_noise_scale(reg, X, y)
    assert training.gradient_norm_squared == result.mean_gradient_norm_squared > 0
    assert X.shape[0] / 2 < training.b_simple < X.shape[0]


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
    with pytest.raises(ValueError, match="at least 2 rows"):
        gradient_noise_scale(clf, X[:1], y[:1])
    with pytest.raises(ValueError, match="greater than 1"):
        gradient_noise_scale(clf, X[:1], y[:1], method="population")
    small = np.full(X.shape[0], 0.01)
    with pytest.raises(ValueError, match="greater than 1"):
        gradient_noise_scale(clf, X, y, sample_weight=small, method="population")
    # Training draws rows, so only the weights' ratios matter (and S, through
    # the penalty share alpha / S: without a penalty, not at all).
    clf.alpha = 0.0
    assert_allclose(
        gradient_noise_scale(clf, X, y, sample_weight=small).b_simple,
        gradient_noise_scale(clf, X, y).b_simple,
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="method must be"):
        gradient_noise_scale(clf, X, y, method="iid")
    reg = _fit(BatchMLPRegressor(hidden_layer_sizes=(3,), max_iter=1), X, y * 1.0)
    with pytest.raises(ValueError, match="outputs"):
        gradient_noise_scale(reg, X, np.c_[y, y])
    with pytest.raises(TypeError, match="BatchMLP"):
        gradient_noise_scale(StandardScaler().fit(X), X, y)


def test_docstring_examples():
    result = doctest.testmod(skbatchnet.diagnostics, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def _flat_gradient(net, X, Y, sample_weight, alpha, total_weight, reduction):
    _, coef_grads, intercept_grads = net.batch_gradient(
        X,
        Y,
        sample_weight,
        alpha=alpha,
        total_weight=total_weight,
        reduction=reduction,
    )
    return np.concatenate([g.ravel() for g in coef_grads + intercept_grads])


@pytest.mark.parametrize(
    "reduction, weighted", [("mean", False), ("sum", False), ("sum", True)]
)
def test_training_noise_is_exact_over_all_batches(reduction, weighted):
    """Every batch of B of the n rows, as a shuffled epoch may draw it: the
    mean of ||g_B - E g_B||^2 / ||E g_B||^2 over all of them is
    noise_to_signal(B), to rounding, at every B (0 at B = n). The reduction
    is applied by Network.batch_gradient, as in training."""
    import itertools

    rng = np.random.RandomState(0)
    n = 8
    X = rng.randn(n, 3)
    y = X[:, 0] - X[:, 1] ** 2 + 0.5 * rng.randn(n)
    s = rng.uniform(0.5, 2.0, n) if weighted else None
    reg = _fit(
        BatchMLPRegressor(
            hidden_layer_sizes=(3,),
            activation="tanh",
            alpha=0.5,
            gradient_reduction=reduction,
            max_iter=2,
        ),
        X,
        y,
        sample_weight=s,
    )
    result = gradient_noise_scale(reg, X, y, sample_weight=s)
    net, S = reg._network(), n if s is None else s.sum()
    G = _flat_gradient(net, X, y, s, reg.alpha, S, "mean")  # grad E
    for B in range(1, n + 1):
        batches = [
            _flat_gradient(
                net,
                X[list(rows)],
                y[list(rows)],
                None if s is None else s[list(rows)],
                reg.alpha,
                S,
                reduction,
            )
            for rows in itertools.combinations(range(n), B)
        ]
        batches = np.array(batches)
        mean = batches.mean(axis=0)
        # 'sum' batches have mean (B S / n) grad E: the same direction.
        factor = 1.0 if reduction == "mean" else B * S / n
        assert_allclose(mean, factor * G, rtol=1e-10, atol=1e-14)
        ratio = np.mean(np.sum((batches - mean) ** 2, axis=1)) / (mean @ mean)
        assert_allclose(ratio, result.noise_to_signal(B), rtol=1e-9, atol=1e-12)


def test_training_noise_scale_does_not_depend_on_the_reduction():
    X, y = _classification(seed=9)
    clf = _fit(BatchMLPClassifier(hidden_layer_sizes=(4,), alpha=0.1), X, y)
    mean = gradient_noise_scale(clf, X, y)
    clf.gradient_reduction = "sum"
    summed = gradient_noise_scale(clf, X, y)
    assert_allclose(summed.b_simple, mean.b_simple, rtol=1e-12)
    # With unequal weights a 'sum' batch also carries the spread of its total
    # weight, and the two differ.
    weights = np.random.RandomState(0).uniform(0.2, 3.0, X.shape[0])
    summed = gradient_noise_scale(clf, X, y, sample_weight=weights)
    clf.gradient_reduction = "mean"
    mean = gradient_noise_scale(clf, X, y, sample_weight=weights)
    assert abs(summed.b_simple / mean.b_simple - 1) > 1e-3


def _regression(n=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.randn(n)
    return X, y


@pytest.mark.parametrize("stage", ["early", "converged"])
@pytest.mark.parametrize(
    "reduction, weighted",
    [("mean", False), ("sum", False), ("sum", True), ("mean", True)],
)
def test_training_noise_scale_by_monte_carlo(stage, reduction, weighted):
    """What b_simple means: batches of B = round(b_simple) rows drawn without
    replacement, reduced as training reduces them, have a mean squared
    deviation from their mean within 20% of the squared norm of that mean
    (grad E for 'mean', (B S / n) grad E for 'sum'), early in training and
    once the loss has stopped falling. Seeded, 400 batches.

    For 'mean' with unequal weights the formula is first order in 1 / B
    (a ratio estimator), and the batch mean is slightly biased: the noise is
    measured around grad E."""
    X, y = _regression()
    n = X.shape[0]
    s = np.random.RandomState(3).uniform(0.5, 2.0, n) if weighted else None
    epochs = 1 if stage == "early" else 400
    reg = _fit(
        BatchMLPRegressor(
            hidden_layer_sizes=(4,),
            activation="tanh",
            solver="sgd",
            batch_size=20,
            learning_rate_init=0.01 if reduction == "mean" else 0.01 / 20,
            gradient_reduction=reduction,
            alpha=0.01,
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=np.inf,
            random_state=0,
        ),
        X,
        y,
        sample_weight=s,
    )
    result = gradient_noise_scale(reg, X, y, sample_weight=s)
    if stage == "converged":
        # The loss has stopped falling (SGD hovers around a minimum) ...
        curve = np.array(reg.loss_curve_)
        assert abs(curve[-100:].mean() - curve[-200:-100].mean()) < 0.01 * curve[-1]
        # ... where the population estimate of |G|^2 is no longer positive,
        # while grad E is known and the training noise scale is finite.
        population = gradient_noise_scale(
            reg, X, y, sample_weight=s, method="population"
        )
        assert population.b_simple == np.inf
        assert n / 2 < result.b_simple < n
    else:
        assert 5 < result.b_simple < n / 4
    net, S = reg._network(), n if s is None else s.sum()
    G = _flat_gradient(net, X, y, s, reg.alpha, S, "mean")  # grad E
    assert_allclose(result.gradient_norm_squared, G @ G, rtol=1e-10)
    B = int(round(result.b_simple))
    target = G if reduction == "mean" else B * S / n * G
    rng = np.random.RandomState(1)
    noise = []
    for _ in range(400):
        rows = rng.choice(n, B, replace=False)
        g_B = _flat_gradient(
            net,
            X[rows],
            y[rows],
            None if s is None else s[rows],
            reg.alpha,
            S,
            reduction,
        )
        noise.append(np.sum((g_B - target) ** 2))
    assert np.mean(noise) == pytest.approx(target @ target, rel=0.2)
