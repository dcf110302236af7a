"""Backprop core vs. references written here from the math alone (own forward
pass, hand-written per-example backprop, finite differences)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import (
    ACTIVATIONS,
    PROBLEMS,
    REF_OUTPUT,
    assert_grads_close,
    central_differences,
    flatten,
    make_problem,
    ref_example_gradient,
    ref_logits,
    ref_losses,
    ref_objective,
    ref_reduced_gradient,
    rel_error,
)

from skbatchnet._activations import relu
from skbatchnet._losses import _row_max
from skbatchnet.backprop import Network
from skbatchnet.per_example import per_example_gradients
from skbatchnet.reduction import Coefficients, reduction_coefficients


# ---- 1. Finite differences of an independent objective ----
@pytest.mark.parametrize("alpha, total", [(0.0, None), (0.3, None), (0.3, 23.0)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss, n_outputs", PROBLEMS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences(
    activation, loss, n_outputs, reduction, weighted, alpha, total
):
    net, X, Y, sw = make_problem(loss, n_outputs, activation)
    sw = sw if weighted else None
    y = Y.ravel() if n_outputs == 1 else Y  # single output given as 1-d
    S = total if total is not None else (X.shape[0] if sw is None else sw.sum())

    loss_value, coef_grads, intercept_grads = net.batch_gradient(
        X, y, sw, alpha=alpha, total_weight=total, reduction=reduction
    )
    theta = flatten(net.coefs, net.intercepts)

    def f(t):
        return ref_objective(t, net, X, Y, sw, alpha, S, reduction)

    fd = central_differences(f, theta)
    analytic = flatten(coef_grads, intercept_grads)
    assert rel_error(fd, analytic) < 1e-6
    # The loss reported is the batch estimate of E, whatever the reduction.
    expected = ref_objective(theta, net, X, Y, sw, alpha, S, "mean")
    assert loss_value == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("loss, n_outputs", PROBLEMS)
def test_per_example_loss_and_objective_match_formulas(loss, n_outputs):
    net, X, Y, sw = make_problem(loss, n_outputs, "relu")
    expected = ref_losses(loss, Y, ref_logits(net.coefs, net.intercepts, "relu", X))
    y = Y.ravel() if n_outputs == 1 else Y
    np.testing.assert_allclose(net.per_example_loss(X, y), expected, rtol=1e-12)
    assert net.penalty() == pytest.approx(sum((W**2).sum() for W in net.coefs))
    theta = flatten(net.coefs, net.intercepts)
    for weights in (None, sw):
        S = len(X) if weights is None else weights.sum()
        E = ref_objective(theta, net, X, Y, weights, 0.7, S, "mean")
        assert net.objective(X, y, weights, alpha=0.7) == pytest.approx(E, rel=1e-12)


# ---- 2. Slow per-example reference loop ----
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss, n_outputs", PROBLEMS[1::2])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batch_gradient_matches_per_example_loop(
    activation, loss, n_outputs, reduction, weighted
):
    net, X, Y, sw = make_problem(loss, n_outputs, activation, n=9, seed=3)
    sw = sw if weighted else None
    alpha, total = 0.05, 40.0
    _, coef_grads, intercept_grads = net.batch_gradient(
        X, Y, sw, alpha=alpha, total_weight=total, reduction=reduction
    )
    ref_coef, ref_icpt = ref_reduced_gradient(net, X, Y, sw, alpha, total, reduction)
    assert_grads_close(coef_grads, ref_coef, rtol=1e-10)
    assert_grads_close(intercept_grads, ref_icpt, rtol=1e-10)


@pytest.mark.parametrize("total", [None, 11.0])
@pytest.mark.parametrize("loss, n_outputs", PROBLEMS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_per_example_gradients_match_loop(activation, loss, n_outputs, total):
    net, X, Y, _ = make_problem(loss, n_outputs, activation, n=6, seed=5)
    alpha = 0.2
    coef_grads, intercept_grads = per_example_gradients(
        net, X, Y, alpha=alpha, total_weight=total
    )
    S = X.shape[0] if total is None else total
    for i in range(X.shape[0]):
        ref_coef, ref_icpt = ref_example_gradient(net, X[i], Y[i], alpha, S)
        assert_grads_close([g[i] for g in coef_grads], ref_coef, rtol=1e-10)
        assert_grads_close([g[i] for g in intercept_grads], ref_icpt, rtol=1e-10)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sparse_input_equals_dense(fmt, reduction):
    net, X, Y, sw = make_problem("log_loss", 3, "relu", n=12, seed=7)
    X[np.random.RandomState(0).rand(*X.shape) < 0.5] = 0.0
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    assert Xs.format == fmt
    for weights in (None, sw):
        dense = net.batch_gradient(X, Y, weights, alpha=0.1, reduction=reduction)
        sparse = net.batch_gradient(Xs, Y, weights, alpha=0.1, reduction=reduction)
        assert sparse[0] == pytest.approx(dense[0], rel=1e-12)
        assert_grads_close(sparse[1], dense[1], rtol=1e-12)
        assert_grads_close(sparse[2], dense[2], rtol=1e-12)
        S = len(X) if weights is None else weights.sum()
        ref = ref_reduced_gradient(net, X, Y, weights, 0.1, S, reduction)
        assert_grads_close(sparse[1], ref[0], rtol=1e-10)
    per_dense = per_example_gradients(net, X, Y, alpha=0.1)
    per_sparse = per_example_gradients(net, Xs, Y, alpha=0.1)
    assert_grads_close(per_sparse[0], per_dense[0], rtol=1e-12)
    np.testing.assert_allclose(net.forward(Xs), net.forward(X), rtol=1e-12)


# ---- 5. Numerical stability ----
def one_layer_net(loss, W, b):
    return Network([np.asarray(W, float)], [np.asarray(b, float)], loss=loss)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_extreme_logits_log_loss(reduction):
    # Row 1: z = [1e4, -1e4, 0], class 1: loss = lse(z) - z_1 = 2e4.
    # Row 2: z = [-1e4, 1e4, 0], class 2: loss = lse(z) - z_2 = 1e4.
    net = one_layer_net("log_loss", [[1e4, -1e4, 0.0]], [0.0, 0.0, 0.0])
    X, Y = np.array([[1.0], [-1.0]]), np.array([[0, 1, 0], [0, 0, 1]], float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loss, cg, ig = net.batch_gradient(X, Y, alpha=1e-3, reduction=reduction)
        losses = net.per_example_loss(X, Y)
        proba = net.forward(X)
    np.testing.assert_allclose(losses, [2e4, 1e4], rtol=1e-12)
    # mean loss + alpha / (2S) ||W||^2 with S = 2, ||W||^2 = 2e8
    assert loss == pytest.approx(1.5e4 + 5e4, rel=1e-12)
    # delta = softmax(z) - y: [1, -1, 0] and [0, 1, -1].
    c, c_total = (0.5, 1.0) if reduction == "mean" else (1.0, 2.0)
    np.testing.assert_allclose(ig[0], c * np.array([1.0, 0.0, -1.0]), atol=1e-12)
    penalty = 1e-3 * c_total / 2 * np.array([[1e4, -1e4, 0.0]])
    expected = c * np.array([[1.0, -2.0, 1.0]]) + penalty
    np.testing.assert_allclose(cg[0], expected, rtol=1e-12)
    np.testing.assert_allclose(proba, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


@pytest.mark.parametrize("n", [3, 100])
def test_relu_on_small_and_large_arrays(n):
    """Below 2048 values relu compares with the scalar 0, above with an array
    of zeros; both give max(z, 0), NaN included."""
    Z = np.random.RandomState(1).randn(n, 50)
    Z[0, 0] = np.nan
    expected = np.where(Z > 0, Z, 0.0)
    expected[0, 0] = np.nan
    np.testing.assert_array_equal(relu(Z.copy()), expected)


@pytest.mark.parametrize("shape", [(5, 3), (49, 3), (200, 3), (1000, 10)])
def test_row_max_matches_numpy(shape):
    """Both ways of taking row maxima (by rows, by columns for tall arrays)."""
    Z = np.random.RandomState(0).randn(*shape)
    Z[0, 1], Z[1], Z[2, 0] = np.nan, -np.inf, np.inf
    np.testing.assert_array_equal(_row_max(Z), Z.max(axis=1, keepdims=True))


def test_extreme_logits_binary_log_loss():
    net = one_layer_net("binary_log_loss", [[1e4, -1e4]], [0.0, 0.0])
    X, Y = np.array([[1.0], [-1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loss, cg, ig = net.batch_gradient(X, Y, reduction="sum")
        losses = net.per_example_loss(X, Y)
    np.testing.assert_allclose(losses, [2e4, 2e4], rtol=1e-12)
    assert loss == pytest.approx(2e4, rel=1e-12)
    # delta rows: [1, -1] and [-1, 1]; summed over the batch they cancel.
    np.testing.assert_allclose(ig[0], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(cg[0], [[2.0, -2.0]], atol=1e-12)


@pytest.mark.parametrize("loss, n_outputs", [("binary_log_loss", 2), ("log_loss", 3)])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_huge_inputs_are_finite(activation, loss, n_outputs):
    net, X, Y, sw = make_problem(loss, n_outputs, activation, n=10, seed=4)
    X = X * 1e6
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for reduction in ("mean", "sum"):
            value, cg, ig = net.batch_gradient(
                X, Y, sw, alpha=1e-4, reduction=reduction
            )
            assert np.isfinite(value)
            assert all(np.isfinite(g).all() for g in cg + ig)
        per_coef, per_icpt = per_example_gradients(net, X, Y)
        out = net.forward(X)
    assert all(np.isfinite(g).all() for g in per_coef + per_icpt)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()


@pytest.mark.parametrize("loss, n_outputs", PROBLEMS)
def test_forward_is_output_activation_of_decision_function(loss, n_outputs):
    net, X, _, _ = make_problem(loss, n_outputs, "logistic", n=6)
    Z = net.decision_function(X)
    np.testing.assert_allclose(
        Z, ref_logits(net.coefs, net.intercepts, "logistic", X), rtol=1e-12
    )
    np.testing.assert_allclose(net.forward(X), REF_OUTPUT[loss](Z), rtol=1e-12)
    if loss == "log_loss":
        np.testing.assert_allclose(net.forward(X * 1e3).sum(axis=1), 1.0, rtol=1e-12)


# ---- 6. Initialization ----
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_initialize_replicates_sklearn_draws(activation, dtype):
    units, seed = [6, 5, 3, 2], 17
    rng = np.random.RandomState(seed)
    factor = 2.0 if activation == "logistic" else 6.0
    expected = []
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        W = rng.uniform(-bound, bound, (fan_in, fan_out))
        b = rng.uniform(-bound, bound, fan_out)
        expected.append((W, b))
    state = np.random.RandomState(seed)
    net = Network.initialize(
        units, activation=activation, loss="poisson", random_state=state, dtype=dtype
    )
    assert net.activation == activation and net.loss == "poisson"
    assert net.layer_units == units
    for (W, b), W_net, b_net in zip(expected, net.coefs, net.intercepts):
        assert W_net.dtype == dtype and b_net.dtype == dtype
        np.testing.assert_array_equal(W_net, W.astype(dtype))
        np.testing.assert_array_equal(b_net, b.astype(dtype))
    # A RandomState instance is advanced in place by exactly those draws.
    assert state.randint(2**31) == rng.randint(2**31)
    again = Network.initialize(units, activation=activation, random_state=seed)
    assert again.dtype == np.float64
    np.testing.assert_array_equal(again.coefs[-1], expected[-1][0])


def test_invalid_names_raise():
    for kwargs in ({"activation": "softmax"}, {"loss": "hinge"}, {"loss": "log"}):
        with pytest.raises(ValueError):
            Network.initialize([3, 2, 1], random_state=0, **kwargs)
        with pytest.raises(ValueError):
            Network([np.zeros((3, 1))], [np.zeros(1)], **kwargs)
    with pytest.raises(ValueError):
        Network([np.zeros((3, 1))], [], loss="squared_error")


# ---- 7. float32 ----
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss, n_outputs", PROBLEMS[1::2])
def test_float32_gradient(loss, n_outputs, reduction):
    net64, X, Y, sw = make_problem(loss, n_outputs, "tanh", n=16, seed=8)
    params = [
        [p.astype(np.float32) for p in ps] for ps in (net64.coefs, net64.intercepts)
    ]
    net32 = Network(*params, activation="tanh", loss=loss)
    X32 = X.astype(np.float32)
    for weights, ws in ((None, None), (sw, net32.workspace(16))):
        kwargs = dict(alpha=0.1, total_weight=50.0, reduction=reduction)
        loss32, cg32, ig32 = net32.batch_gradient(
            X32, Y, weights, workspace=ws, **kwargs
        )
        loss64, cg64, ig64 = net64.batch_gradient(
            X32.astype(np.float64), Y, weights, **kwargs
        )
        assert all(g.dtype == np.float32 for g in cg32 + ig32)
        assert loss32 == pytest.approx(loss64, rel=1e-5)
        for g32, g64 in zip(cg32 + ig32, cg64 + ig64):
            assert rel_error(g32.astype(np.float64), g64) < 1e-4


# -- defaults, messages, dtypes and the chunked paths (mutation testing) -------


def test_network_defaults():
    net = Network.initialize([3, 4, 2], random_state=0)
    assert (net.activation, net.loss) == ("relu", "squared_error")
    plain = Network(net.coefs, net.intercepts)
    assert (plain.activation, plain.loss) == ("relu", "squared_error")
    X, Y = np.ones((2, 3)), np.ones((2, 2))
    # objective's alpha defaults to 0: the data term alone.
    assert plain.objective(X, Y) == plain.objective(X, Y, alpha=0.0)
    assert plain.objective(X, Y) != plain.objective(X, Y, alpha=1.0)


def test_network_messages():
    net = Network.initialize([3, 4, 2], random_state=0)
    cases = [
        (dict(activation="gelu"), "activation must be one of "),
        (dict(loss="hinge"), "loss must be one of "),
    ]
    for kwargs, start in cases:
        with pytest.raises(ValueError) as info:
            Network(net.coefs, net.intercepts, **kwargs)
        assert str(info.value).startswith(start)
        assert repr(next(iter(kwargs.values()))) + "." in str(info.value)
    with pytest.raises(ValueError) as info:
        Network(net.coefs, net.intercepts[:1])
    assert str(info.value) == (
        "coefs and intercepts must be non-empty lists of the same length, got 2 and 1."
    )


def test_float32_network_stays_float32():
    net = Network.initialize(
        [3, 4, 2], loss="binary_log_loss", dtype=np.float32, random_state=0
    )
    assert all(p.dtype == np.float32 for p in net.coefs + net.intercepts)
    X = np.random.RandomState(0).randn(5, 3).astype(np.float32)
    y = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 0]], dtype=np.float64)
    assert net.decision_function(X).dtype == np.float32
    assert net.per_example_loss(X, y).dtype == np.float32


def test_float32_network_rounds_float64_targets_to_float32():
    """A float32 network computes in float32: float64 targets give exactly
    what the same targets rounded to float32 give (not a float64 loss nor
    float64 residuals cast back)."""
    rng = np.random.RandomState(3)
    net = Network.initialize(
        [3, 4, 2], activation="tanh", dtype=np.float32, random_state=0
    )
    X = rng.randn(6, 3).astype(np.float32)
    y64 = rng.randn(6, 2)  # not representable in float32
    y32 = y64.astype(np.float32)
    assert not np.array_equal(y32.astype(np.float64), y64)
    Z = net.decision_function(X)
    for method, args in [
        (net.per_example_loss, (X,)),
        (lambda y: net.per_example_loss_from_logits(y, Z), ()),
    ]:
        got, expected = method(*args, y64), method(*args, y32)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    kw = dict(alpha=0.1, total_weight=6.0)
    got, expected = net.batch_gradient(X, y64, **kw), net.batch_gradient(X, y32, **kw)
    assert got[0] == expected[0]
    for g, e in zip(got[1] + got[2], expected[1] + expected[2]):
        np.testing.assert_array_equal(g, e)
    c = reduction_coefficients(None, 6, "mean")
    (loss64, g64), (loss32, g32) = (net.gradient(X, y, c, **kw) for y in (y64, y32))
    assert loss64 == loss32
    np.testing.assert_array_equal(g64, g32)


def test_one_dimensional_target_is_one_column():
    net = Network.initialize([3, 4, 1], random_state=0)
    X, y = np.random.RandomState(1).randn(6, 3), np.arange(6.0)
    np.testing.assert_array_equal(
        net.per_example_loss(X, y), net.per_example_loss(X, y.reshape(-1, 1))
    )


def test_zero_weight_sum_batch_estimates_the_penalty_alone():
    # 'sum' accepts a batch of total weight 0: no example counts, so its
    # estimate of E is the penalty alone, and its gradient (every c_i is 0)
    # is 0.
    net = Network.initialize([3, 4, 2], random_state=0)
    X, Y = np.ones((3, 3)), np.ones((3, 2))
    w = np.zeros(3)
    c = reduction_coefficients(w, 3, "sum")
    loss, grad = net.gradient(X, Y, c, sample_weight=w, alpha=0.5, total_weight=4.0)
    assert loss == pytest.approx(0.5 * 0.5 * net.penalty() / 4.0, rel=1e-15)
    np.testing.assert_array_equal(grad, np.zeros_like(grad))


def test_scalar_coefficients_scale_the_gradient():
    net = Network.initialize([3, 4, 2], random_state=0)
    rng = np.random.RandomState(2)
    X, Y = rng.randn(5, 3), rng.randn(5, 2)
    one = net.gradient(X, Y, Coefficients(1.0, 5.0), alpha=0.3)[1].copy()
    for factor in (2.0, 0.5):
        scaled = net.gradient(X, Y, Coefficients(factor, 5.0 * factor), alpha=0.3)[1]
        np.testing.assert_allclose(scaled, factor * one, rtol=1e-13)


@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_paths_equal_one_pass(monkeypatch, weighted):
    # Past chunk_rows a batch is processed chunk by chunk; force tiny chunks
    # and compare with the one-pass results.
    net = Network.initialize([3, 4, 2], random_state=0)
    rng = np.random.RandomState(3)
    X, Y = rng.randn(23, 3), rng.randn(23, 2)
    w = rng.uniform(0.5, 2.0, 23) if weighted else None
    c = reduction_coefficients(w, 23, "mean")
    whole_out = net.decision_function(X)
    whole_loss, whole_grad = net.gradient(X, Y, c, sample_weight=w, alpha=0.1)
    whole_grad = whole_grad.copy()
    monkeypatch.setattr(Network, "chunk_rows", lambda self, cache_mib=None: 5)
    np.testing.assert_allclose(net.decision_function(X), whole_out, rtol=1e-13)
    loss, grad = net.gradient(
        X, Y, c, sample_weight=w, alpha=0.1, workspace=net.workspace(5)
    )
    assert loss == pytest.approx(whole_loss, rel=1e-13)
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-12, atol=1e-15)
