"""``gradient_reduction='unbiased'`` through the estimators.

The learner's example of the reduction issue: a line fitted to weighted data
by plain SGD. ``'mean'`` divides each step by the batch's own weight, so at
batch 1 the weights cancel and the fit follows the *unweighted* least-squares
line; ``'unbiased'`` divides by the expected batch weight and follows the
weighted one. The oracle is weighted least squares by ``numpy.linalg``.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import ref_example_gradient
from conftest import use_numpy_epochs

from skbatchnet import BatchMLPRegressor
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._optimizers import SGD
from skbatchnet._training import NumpyEpochs, Step, TrainingData
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher

AT = np.array([[-1.0], [1.0]])


def _weighted_line_data():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 1)
    y = np.sign(X[:, 0]) + 0.1 * rng.randn(200)
    w = np.where(X[:, 0] > 0, 10.0, 0.1)
    return X, y, w


def _least_squares_at(X, y, w):
    """The weighted least-squares line's values at x = -1 and 1."""
    A = np.c_[X, np.ones(len(X))] * np.sqrt(w)[:, None]
    slope, intercept = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)[0]
    return AT[:, 0] * slope + intercept


def _line_fit(reduction, batch_size, **params):
    X, y, w = _weighted_line_data()
    model = BatchMLPRegressor(
        hidden_layer_sizes=(1,),
        activation="identity",
        solver="sgd",
        momentum=0.0,
        alpha=0.0,
        learning_rate_init=0.01,
        batch_size=batch_size,
        gradient_reduction=reduction,
        average=batch_size == 1,
        max_iter=300,
        tol=0.0,
        n_iter_no_change=10**6,
        random_state=0,
        **params,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        return model.fit(X, y, sample_weight=w).predict(AT)


@pytest.mark.parametrize("numpy_tier", [False, True])
def test_unbiased_at_batch_1_finds_the_weighted_line_and_mean_the_unweighted(
    monkeypatch, numpy_tier
):
    if numpy_tier:
        use_numpy_epochs(monkeypatch)
    X, y, w = _weighted_line_data()
    weighted = _least_squares_at(X, y, w)
    unweighted = _least_squares_at(X, y, np.ones_like(w))
    assert np.abs(weighted - unweighted).max() > 1  # the two answers differ
    unbiased = _line_fit("unbiased", 1)
    mean = _line_fit("mean", 1)
    np.testing.assert_allclose(unbiased, weighted, atol=0.05)
    np.testing.assert_allclose(mean, unweighted, atol=0.1)


def test_unbiased_equals_mean_for_unit_weights():
    X, y, _ = _weighted_line_data()
    fits = {}
    for reduction in ("mean", "unbiased"):
        model = BatchMLPRegressor(
            hidden_layer_sizes=(4,),
            batch_size=16,
            gradient_reduction=reduction,
            max_iter=5,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[reduction] = model.fit(X, y, sample_weight=np.ones(len(y)))
    for a, b in zip(fits["mean"].coefs_, fits["unbiased"].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def _flat(coefs, intercepts):
    return np.concatenate([a.ravel() for a in list(coefs) + list(intercepts)])


@pytest.mark.parametrize("csr", [False, True])
@pytest.mark.parametrize("runner_class", [NumpyEpochs, CompiledEpochs])
def test_a_batch_without_weight_steps_on_the_penalty_alone(runner_class, csr):
    # Two batches of 4 rows in stored order; the first has no weight.
    rng = np.random.RandomState(1)
    X, Y = rng.randn(8, 3), rng.randn(8, 1)
    w = np.r_[np.zeros(4), np.full(4, 2.5)]
    S, n, lr, alpha = w.sum(), 8, 0.1, 0.3
    initial = Network.initialize([3, 5, 1], activation="tanh", random_state=0)
    net = Network(
        [W.copy() for W in initial.coefs],
        [b.copy() for b in initial.intercepts],
        activation="tanh",
        loss="squared_error",
    )
    data = TrainingData(sp.csr_matrix(X) if csr else X, Y, w, S)
    step = Step(alpha=alpha, reduction="unbiased")
    optimizer = SGD([net.parameters], lr, "constant", 0.0, False)
    if runner_class is CompiledEpochs:
        assert CompiledEpochs.supports(net, data.X, optimizer, step)
    runner = runner_class(net, data, Minibatcher(4), step)
    sums = runner.run(None, optimizer, None)
    assert sums.steps == 2 and sums.seen == 8

    # The oracle: step 1 decays the weights by lr * alpha / S (biases stay);
    # step 2 follows sum_i s_i grad(loss_i) / (4 S / n) over rows 4..7, plus
    # the penalty's expectation (alpha / S) W (its coefficients sum to 2
    # here, the batch having twice its expected weight).
    coefs = [W * (1 - lr * alpha / S) for W in initial.coefs]
    intercepts = [b.copy() for b in initial.intercepts]
    middle = Network(coefs, intercepts, activation="tanh", loss="squared_error")
    expected_weight = 4 * S / n
    step2 = sum(
        w[i] / expected_weight * _flat(*ref_example_gradient(middle, X[i], Y[i], 0, S))
        for i in range(4, 8)
    ) + _flat([alpha / S * W for W in coefs], [0 * b for b in intercepts])
    expected = _flat(coefs, intercepts) - lr * step2
    np.testing.assert_allclose(net.parameters, expected, rtol=1e-12, atol=1e-14)
