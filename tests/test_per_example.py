"""Per-example gradient norms and memory-bounded (chunked) computation."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn import config_context

from skbatchnet import backprop
from skbatchnet._workspace import chunk_rows
from skbatchnet._workspace import chunks as _chunks
from skbatchnet.backprop import Network
from skbatchnet.per_example import (
    per_example_gradient_norms,
    per_example_gradients,
    per_example_input_gradients,
)

LOSSES = {
    "squared_error": lambda rng, n: rng.randn(n, 2),
    "poisson": lambda rng, n: rng.poisson(2.0, (n, 2)).astype(float),
    "binary_log_loss": lambda rng, n: (rng.rand(n, 3) > 0.5).astype(float),
    "log_loss": lambda rng, n: np.eye(4)[rng.randint(0, 4, n)],
}


def _problem(loss, activation="tanh", n=12, seed=0, sparse=False):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    X[rng.rand(n, 5) < 0.4] = 0.0
    Y = LOSSES[loss](rng, n)
    units = [5, 6, 4, Y.shape[1]]
    net = Network.initialize(units, activation=activation, loss=loss, random_state=seed)
    return net, (sp.csr_matrix(X) if sparse else X), Y


def _flat(grads, n):
    coef_grads, intercept_grads = grads
    return np.hstack([g.reshape(n, -1) for g in coef_grads + intercept_grads])


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["identity", "logistic", "relu"])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("sparse", [False, True])
def test_norms_equal_materialized_gradients(loss, activation, alpha, sparse):
    net, X, Y = _problem(loss, activation, sparse=sparse)
    n = X.shape[0]
    grads = per_example_gradients(net, X, Y, alpha=alpha, total_weight=30.0)
    expected = np.linalg.norm(_flat(grads, n), axis=1)
    norms = per_example_gradient_norms(net, X, Y, alpha=alpha, total_weight=30.0)
    assert_allclose(norms, expected, rtol=1e-10)
    method = per_example_gradient_norms(net, X, Y, alpha=alpha, total_weight=30.0)
    assert_allclose(method, expected, rtol=1e-10)


def test_norms_against_finite_differences():
    """The norm of example i's gradient, from central differences of its own
    term of the objective, loss_i + (alpha / 2S) ||W||^2."""
    net, X, Y = _problem("log_loss", "tanh", n=4, seed=3)
    alpha, S = 0.5, 10.0
    theta = net.parameters.copy()
    h = 1e-6

    def term(i, parameters):
        probe = Network(
            [c.copy() for c in net.coefs],
            [b.copy() for b in net.intercepts],
            activation=net.activation,
            loss=net.loss,
        )
        probe.parameters[...] = parameters
        loss_i = probe.per_example_loss(X[i : i + 1], Y[i : i + 1])[0]
        return loss_i + alpha / (2 * S) * probe.penalty()

    norms = per_example_gradient_norms(net, X, Y, alpha=alpha, total_weight=S)
    for i in range(X.shape[0]):
        fd = np.empty_like(theta)
        for j in range(theta.size):
            step = np.zeros_like(theta)
            step[j] = h
            fd[j] = (term(i, theta + step) - term(i, theta - step)) / (2 * h)
        assert norms[i] == pytest.approx(np.linalg.norm(fd), rel=1e-7)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_gradient_equals_unchunked(sparse, reduction):
    net, X, Y = _problem("log_loss", "relu", n=300, seed=1, sparse=sparse)
    w = np.random.RandomState(2).rand(300)
    kwargs = dict(alpha=0.3, total_weight=500.0, reduction=reduction)
    whole = net.batch_gradient(X, Y, w, **kwargs)
    with config_context(working_memory=0.001):  # about 1 KiB: chunks of 6 rows
        assert net.chunk_rows() < 10
        chunked = net.batch_gradient(X, Y, w, **kwargs)
        norms_chunked = per_example_gradient_norms(net, X, Y, alpha=0.3)
        output_chunked = net.forward(X)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-12)
    for a, b in zip(chunked[1] + chunked[2], whole[1] + whole[2]):
        assert np.linalg.norm(a - b) <= 1e-12 * np.linalg.norm(b)
    assert_allclose(
        norms_chunked, per_example_gradient_norms(net, X, Y, alpha=0.3), rtol=1e-12
    )
    assert_allclose(output_chunked, net.forward(X), rtol=1e-12)


def test_chunk_rows_follows_working_memory():
    units = [100, 256, 1]
    per_row = 8 * 2 * 257
    assert chunk_rows(units, np.float64, budget_mib=64) == 64 * 2**20 // per_row
    assert chunk_rows(units, np.float32, budget_mib=64) == 64 * 2**20 // (per_row // 2)
    assert chunk_rows(units, np.float64, budget_mib=1e-9) == 1
    with config_context(working_memory=2):
        assert Network.initialize(units).chunk_rows() == 2 * 2**20 // per_row
        assert (
            Network.initialize(units).workspace(10**6).n_samples == 2 * 2**20 // per_row
        )
    # With a large working_memory the cache budget (8 MiB) sets the chunk.
    with config_context(working_memory=1024):
        assert Network.initialize(units).chunk_rows() == 8 * 2**20 // per_row


@pytest.mark.parametrize(
    "n_rows, size", [(1, 1), (1024, 492), (1024, 1024), (1025, 1024), (20000, 1971)]
)
def test_chunks_cover_the_rows_in_near_equal_parts(n_rows, size):
    chunks = _chunks(n_rows, size)
    assert len(chunks) == -(-n_rows // size)
    assert chunks[0].start == 0 and chunks[-1].stop == n_rows
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    lengths = [c.stop - c.start for c in chunks]
    assert max(lengths) <= size
    assert max(lengths) - min(lengths) <= 1


def test_prediction_chunks_fit_the_forward_cache_budget(monkeypatch):
    net, X, _ = _problem("log_loss", "relu", n=300, seed=1)
    whole = net.forward(X)
    budget = 300 * 8 * 2 * sum(net.layer_units[1:]) / 2**20 / 2.5  # 3 chunks
    monkeypatch.setattr(backprop, "_FORWARD_CACHE_MIB", budget)
    seen = []
    forward = Network._forward

    def spy(self, X_chunk, buffers, *args):
        seen.append(X_chunk.shape[0])
        return forward(self, X_chunk, buffers, *args)

    monkeypatch.setattr(Network, "_forward", spy)
    with config_context(working_memory=1024):
        chunked = net.forward(X)
    assert seen == [100, 100, 100]
    assert_allclose(chunked, whole, rtol=1e-12)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_input_gradients_against_finite_differences(loss, activation):
    """d loss_i / d x_i from central differences of example i's own loss, one
    input feature at a time, in float64."""
    net, X, Y = _problem(loss, activation, n=6, seed=4)
    grads = per_example_input_gradients(net, X, Y)
    assert grads.shape == X.shape
    h = 1e-6
    numeric = np.empty_like(X)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            up, down = X[i : i + 1].copy(), X[i : i + 1].copy()
            up[0, j] += h
            down[0, j] -= h
            numeric[i, j] = (
                net.per_example_loss(up, Y[i : i + 1])[0]
                - net.per_example_loss(down, Y[i : i + 1])[0]
            ) / (2 * h)
    # 1e-6 relative to each example's gradient (a component can be ~0).
    scale = np.linalg.norm(numeric, axis=1, keepdims=True)
    assert np.all(np.abs(grads - numeric) <= 1e-6 * scale)
    assert np.all(scale > 0)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_input_gradients_sparse_and_chunked_equal_dense(loss):
    net, X, Y = _problem(loss, "relu", n=200, seed=5)
    dense = per_example_input_gradients(net, X, Y)
    sparse = per_example_input_gradients(net, sp.csr_matrix(X), Y)
    assert isinstance(sparse, np.ndarray)
    assert_allclose(sparse, dense, rtol=1e-12, atol=1e-15)
    with config_context(working_memory=0.001):
        assert net.chunk_rows() < 10
        chunked = per_example_input_gradients(net, sp.csr_matrix(X), Y)
    assert_allclose(chunked, dense, rtol=1e-12, atol=1e-15)


def test_input_gradients_are_first_layer_deltas_times_weights():
    """The formula D_1 W_1^T, with D_1 from the materialized per-example bias
    gradients of the first layer (which are the deltas themselves)."""
    net, X, Y = _problem("log_loss", "tanh", n=10, seed=6)
    _, intercept_grads = per_example_gradients(net, X, Y)
    expected = intercept_grads[0] @ net.coefs[0].T
    assert_allclose(per_example_input_gradients(net, X, Y), expected, rtol=1e-12)


def test_input_gradients_exported():
    import skbatchnet

    assert skbatchnet.per_example_input_gradients is per_example_input_gradients
