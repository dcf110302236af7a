"""Per-example clipping (``max_gradient_norm``) against a slow reference.

The reference materializes each example's gradient by the hand-written
backprop of ``tests/_reference.py``, clips it to norm ``C``, and reduces the
batch as a loop over examples; the penalty is added unclipped. One step of
plain SGD through each tier (the numpy specification and the compiled loop)
must land where the reference says, for every activation and loss, dense and
CSR input, at batch 1 and larger.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import ACTIVATIONS, flatten, make_problem, ref_example_gradient

from skbatchnet._clipping import gradient_squared_norms, row_squared_norms
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._optimizers import SGD
from skbatchnet._training import NumpyEpochs, Step, TrainingData
from skbatchnet._workspace import Workspace
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher

LOSSES = [("squared_error", 2), ("poisson", 2), ("binary_log_loss", 3), ("log_loss", 3)]


def _reference_norms(net, X, Y):
    """||grad(loss_i)|| of each example, from its materialized gradient."""
    return np.array(
        [
            np.linalg.norm(flatten(*ref_example_gradient(net, X[i], Y[i], 0.0, 1.0)))
            for i in range(len(X))
        ]
    )


def _reference_step(net, X, Y, sw, *, reduction, alpha, C, n_total, S):
    """sum_i c_i clip(grad(loss_i)) + c_total (alpha / S) W, materialized, for
    a batch of the rows given drawn from ``n_total`` rows of total weight S;
    the coefficients written out from their definitions."""
    n = len(X)
    c, c_total = {
        "mean": (sw / sw.sum(), 1.0),
        "sum": (sw, sw.sum()),
        "unbiased": (sw / (n * S / n_total), 1.0),  # the penalty's expectation
    }[reduction]
    step = np.zeros(net.parameters.size)
    for i in range(n):
        g = flatten(*ref_example_gradient(net, X[i], Y[i], 0.0, S))
        step += c[i] * g * min(1.0, C / np.linalg.norm(g))
    W = [alpha / S * c_total * coef for coef in net.coefs]
    return step + flatten(W, [0 * b for b in net.intercepts])


@pytest.mark.parametrize("loss, n_outputs", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_norm_identity_equals_the_materialized_norms(activation, loss, n_outputs):
    net, X, Y, _ = make_problem(loss, n_outputs, activation, n=9)
    ws = Workspace(net.layer_units, len(X), net.dtype)
    net.backward(X, Y, workspace=ws, gradients=False)
    squared = gradient_squared_norms([X, *ws.activations[:-1]], ws.deltas)
    np.testing.assert_allclose(
        np.sqrt(squared), _reference_norms(net, X, Y), rtol=1e-12
    )


def test_sparse_row_norms_sum_duplicate_entries_first():
    # Row 0 holds column 2 twice (1 + 2 = 3); the matrix stands for their sum.
    X = sp.csr_matrix(
        (np.array([1.0, 2.0, 4.0, 5.0]), np.array([2, 2, 0, 1]), np.array([0, 3, 4])),
        shape=(2, 3),
    )
    assert not X.has_canonical_format
    np.testing.assert_allclose(row_squared_norms(X), [9.0 + 16.0, 25.0])
    np.testing.assert_allclose(row_squared_norms(X), row_squared_norms(X.toarray()))


def _split_duplicates(X):
    """X as a CSR matrix whose every entry is stored as two halves."""
    rows, cols = np.nonzero(X)  # in row-major order
    indptr = np.r_[0, np.cumsum(2 * np.bincount(rows, minlength=len(X)))]
    halves = np.repeat(X[rows, cols] / 2, 2)
    out = sp.csr_matrix((halves, np.repeat(cols, 2), indptr), shape=X.shape)
    assert out.nnz == 2 * rows.size
    return out


@pytest.mark.parametrize("runner_class", [NumpyEpochs, CompiledEpochs])
@pytest.mark.parametrize("input_kind", ["dense", "csr", "csr_duplicates"])
@pytest.mark.parametrize(
    "batch, reduction",
    [(1, "mean"), (1, "unbiased"), (6, "mean"), (6, "sum"), (6, "unbiased")],
)
@pytest.mark.parametrize("loss, n_outputs", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_clipped_step_equals_the_per_example_reference(
    activation, loss, n_outputs, batch, reduction, input_kind, runner_class
):
    # One step: on one row, or on the first 6 of 11 rows (the short last
    # batch dropped), where 'unbiased' divides by |B| S / n, not by the
    # batch's own weight.
    n_total = 1 if batch == 1 else 11
    net, X, Y, sw = make_problem(loss, n_outputs, activation, n=max(n_total, 2), seed=3)
    X, Y, sw = X[:n_total], Y[:n_total], sw[:n_total]
    if batch == 1:
        sw = np.array([1.7])
    S = sw.sum()
    norms = _reference_norms(net, X[:batch], Y[:batch])
    # Clip about half of the rows: a C between the norms (at batch 1, below).
    C = float(np.median(norms)) if batch > 1 else 0.5 * norms[0]
    expected = net.parameters - 0.5 * _reference_step(
        net,
        X[:batch],
        Y[:batch],
        sw[:batch],
        reduction=reduction,
        alpha=0.2,
        C=C,
        n_total=n_total,
        S=S,
    )
    data_X = {"dense": X, "csr": sp.csr_matrix(X)}.get(input_kind)
    if input_kind == "csr_duplicates":
        data_X = _split_duplicates(X)
    data = TrainingData(data_X, Y.astype(net.dtype), sw, float(S))
    step = Step(alpha=0.2, reduction=reduction, max_gradient_norm=C)
    optimizer = SGD([net.parameters], 0.5, "constant", 0.0, False)
    if runner_class is CompiledEpochs:
        assert CompiledEpochs.supports(net, data.X, optimizer, step)
    batcher = Minibatcher(batch, drop_last=True)
    sums = runner_class(net, data, batcher, step).run(None, optimizer, None)
    assert sums.steps == 1
    assert sums.clipped == int(np.sum(norms > C))
    np.testing.assert_allclose(net.parameters, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("runner_class", [NumpyEpochs, CompiledEpochs])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_clipped_float32_step_follows_the_reference(activation, runner_class):
    net64, X, Y, sw = make_problem("log_loss", 3, activation, n=6, seed=3)
    net = Network(
        [W.astype(np.float32) for W in net64.coefs],
        [b.astype(np.float32) for b in net64.intercepts],
        activation=activation,
        loss="log_loss",
    )
    reference = Network(
        [W.astype(np.float64) for W in net.coefs],
        [b.astype(np.float64) for b in net.intercepts],
        activation=activation,
        loss="log_loss",
    )
    X32 = X.astype(np.float32)
    C = float(np.median(_reference_norms(reference, X32.astype(float), Y)))
    expected = reference.parameters - _reference_step(
        reference,
        X32.astype(float),
        Y,
        sw,
        reduction="unbiased",
        alpha=0.2,
        C=C,
        n_total=6,
        S=sw.sum(),
    )
    data = TrainingData(X32, Y.astype(np.float32), sw.astype(np.float32), sw.sum())
    step = Step(alpha=0.2, reduction="unbiased", max_gradient_norm=C)
    optimizer = SGD([net.parameters], 1.0, "constant", 0.0, False)
    runner_class(net, data, Minibatcher(6), step).run(None, optimizer, None)
    np.testing.assert_allclose(net.parameters, expected, rtol=2e-5, atol=2e-6)


def test_a_norm_must_be_positive():
    from skbatchnet._clipping import clip_factors

    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="max_norm"):
            clip_factors(np.ones(3), bad)


# -- through the estimators -----------------------------------------------------


def _classification():
    from sklearn.datasets import make_classification

    return make_classification(n_samples=120, n_features=6, random_state=0)


@pytest.mark.parametrize("numpy_tier", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_norm_above_every_gradient_changes_nothing(monkeypatch, solver, numpy_tier):
    from conftest import use_numpy_epochs

    from skbatchnet import BatchMLPClassifier

    if numpy_tier:
        use_numpy_epochs(monkeypatch)
    X, y = _classification()
    params = dict(hidden_layer_sizes=(5,), solver=solver, batch_size=8, max_iter=3)
    plain = BatchMLPClassifier(**params, random_state=0).fit(X, y)
    wide = BatchMLPClassifier(**params, max_gradient_norm=1e6, random_state=0)
    wide.fit(X, y)
    assert plain.clip_fraction_curve_ is None
    assert wide.clip_fraction_curve_ == [0.0] * 3
    for a, b in zip(plain.coefs_ + plain.intercepts_, wide.coefs_ + wide.intercepts_):
        # Clipping scales the errors after backpropagating them, not before.
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_a_tiny_norm_clips_every_example_and_slows_training():
    from skbatchnet import BatchMLPClassifier

    X, y = _classification()
    params = dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=8, max_iter=4)
    tiny = BatchMLPClassifier(**params, max_gradient_norm=1e-6, random_state=0)
    tiny.fit(X, y)
    assert tiny.clip_fraction_curve_ == [1.0] * 4
    plain = BatchMLPClassifier(**params, random_state=0).fit(X, y)
    # Steps of norm at most lr * C per example: the weights barely leave
    # their start, which a norm 1000 times smaller stands in for.
    start = BatchMLPClassifier(**params, max_gradient_norm=1e-9, random_state=0)
    start.fit(X, y)

    def distance(a, b):
        return max(np.abs(u - v).max() for u, v in zip(a.coefs_, b.coefs_))

    assert distance(tiny, start) < 1e-5 < 1e-2 < distance(plain, start)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, "1"])
def test_bad_max_gradient_norm_is_refused(bad):
    from sklearn.utils._param_validation import InvalidParameterError

    from skbatchnet import BatchMLPRegressor

    X, y = _classification()
    with pytest.raises(InvalidParameterError, match="max_gradient_norm"):
        BatchMLPRegressor(max_gradient_norm=bad).fit(X, y)


def test_clipping_with_lbfgs_is_refused_and_changes_nothing():
    from skbatchnet import BatchMLPClassifier

    X, y = _classification()
    model = BatchMLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    model.fit(X, y)
    before = [W.copy() for W in model.coefs_]
    model.set_params(solver="lbfgs", max_gradient_norm=1.0)
    with pytest.raises(ValueError, match="solver='lbfgs'.*max_gradient_norm=None"):
        model.fit(X, y)
    for a, b in zip(model.coefs_, before):
        np.testing.assert_array_equal(a, b)
