"""Workspaces: buffers reused across calls, chunked batches, both product kernels."""

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import (
    N_FEATURES,
    assert_grads_close,
    make_problem,
    ref_reduced_gradient,
)

from skbatchnet._workspace import SMALL_BATCH_ROWS, Workspace
from skbatchnet.backprop import Network
from skbatchnet.reduction import reduction_coefficients


def test_workspace_reuse_matches_fresh_allocation():
    net, X, Y, sw = make_problem("squared_error", 3, "tanh", n=8, seed=2)
    rng = np.random.RandomState(9)
    batches = [(X, Y, sw), (rng.randn(8, N_FEATURES), rng.randn(8, 3), None)]
    ws = net.workspace(8)
    for call in range(5):
        Xb, Yb, swb = batches[call % 2]
        kwargs = dict(alpha=0.4, total_weight=30.0, reduction=["mean", "sum"][call % 2])
        loss_ws, cg_ws, ig_ws = net.batch_gradient(Xb, Yb, swb, workspace=ws, **kwargs)
        loss, cg, ig = net.batch_gradient(Xb, Yb, swb, **kwargs)
        assert loss_ws == loss
        for a, b in zip(cg_ws + ig_ws, cg + ig):
            np.testing.assert_array_equal(a, b)
        # The returned arrays are the workspace's buffers, reused every call.
        assert all(
            a is b for a, b in zip(cg_ws + ig_ws, ws.coef_grads + ws.intercept_grads)
        )
        assert not any(np.shares_memory(a, b) for a, b in zip(cg, cg_ws))


@pytest.mark.parametrize("rows", [1, 3, 5, 8, 9])
def test_workspace_of_any_size_gives_the_same_gradient(rows):
    """A shorter batch uses the first rows of the buffers; a longer one is
    computed through the workspace chunk by chunk and the chunks summed."""
    net, X, Y, sw = make_problem("log_loss", 3, "relu", n=8, seed=4)
    for reduction in ("mean", "sum"):
        kwargs = dict(alpha=0.4, total_weight=30.0, reduction=reduction)
        fresh = net.batch_gradient(X, Y, sw, **kwargs)
        reused = net.batch_gradient(X, Y, sw, workspace=net.workspace(rows), **kwargs)
        assert reused[0] == pytest.approx(fresh[0], rel=1e-12)
        assert_grads_close(reused[1] + reused[2], fresh[1] + fresh[2], rtol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F", "csr"])
@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_both_weight_gradient_kernels_match_the_loop(alpha, layout):
    """Workspaces of fewer than SMALL_BATCH_ROWS rows compute weight gradients
    with scipy's gemm, in place and onto the decay; larger ones with numpy's
    product, the decay added after. Both give the per-example loop's reduced
    gradient, whatever their buffers held before."""
    n = SMALL_BATCH_ROWS + 6
    net, X, Y, sw = make_problem("log_loss", 3, "relu", n=n, seed=12)
    ref = ref_reduced_gradient(net, X, Y, sw, alpha, 90.0, "mean")
    X_in = {"C": X, "F": np.asfortranarray(X), "csr": sp.csr_matrix(X)}[layout]
    small = Workspace(net.layer_units, 20, net.dtype)  # 4 chunks of <= 20 rows
    large = Workspace(net.layer_units, n, net.dtype)
    assert small.decay_in_place and not large.decay_in_place
    for ws in (small, large):
        ws.gradient[...] = np.nan
        _, coef_grads, intercept_grads = net.batch_gradient(
            X_in, Y, sw, alpha=alpha, total_weight=90.0, workspace=ws
        )
        assert_grads_close(coef_grads + intercept_grads, ref[0] + ref[1], rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_dtypes_without_blas_use_numpy_on_small_batches(dtype):
    """scipy's BLAS has no gemm for these types and would write into a copy."""
    net64, X, Y, sw = make_problem("log_loss", 3, "relu", n=6, seed=14)
    net = Network(
        [W.astype(dtype) for W in net64.coefs],
        [b.astype(dtype) for b in net64.intercepts],
        activation="relu",
        loss="log_loss",
    )
    ws = net.workspace(6)
    assert not ws.decay_in_place
    ws.gradient[...] = np.nan
    _, coef_grads, _ = net.batch_gradient(
        X.astype(dtype), Y, sw, alpha=0.1, workspace=ws
    )
    ref = ref_reduced_gradient(net64, X, Y, sw, 0.1, sw.sum(), "mean")
    rtol = 1e-2 if dtype == np.float16 else 1e-10
    assert_grads_close([g.astype(np.float64) for g in coef_grads], ref[0], rtol=rtol)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rows", [4, 2 * SMALL_BATCH_ROWS])
def test_scaled_coefficients_scale_the_gradient_not_the_loss(rows, weighted):
    net, X, Y, sw = make_problem("log_loss", 3, "relu", n=rows, seed=13)
    sw = sw if weighted else None
    kwargs = dict(sample_weight=sw, alpha=0.3, total_weight=500.0)
    ref = ref_reduced_gradient(net, X, Y, sw, 0.3, 500.0, "sum")
    ref_loss = net.batch_gradient(X, Y, sw, alpha=0.3, total_weight=500.0)[0]
    c = reduction_coefficients(sw, rows, "sum").scaled(0.01)
    loss, gradient = net.gradient(X, Y, c, workspace=net.workspace(rows), **kwargs)
    coef_grads, intercept_grads = net.unpack(gradient)
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    scaled_ref = [0.01 * g for g in ref[0] + ref[1]]
    assert_grads_close(coef_grads + intercept_grads, scaled_ref, rtol=1e-10)
