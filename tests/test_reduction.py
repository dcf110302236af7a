"""Reduction coefficients (``skbatchnet.reduction``) against their formulas.

``'mean'`` gives ``c_i = s_i / sum_j s_j`` (``1/n`` without weights) and
total 1; ``'sum'`` gives ``c_i = s_i`` (1 without weights) and total
``sum_i s_i`` (``n``); ``'unbiased'`` gives ``c_i = s_i / expected_weight``
and total 1. The reduced gradient ``sum_i c_i g_i`` is checked against the
weighted mean and the weighted sum written out here, and each reduction's
expectation over every batch a shuffled epoch can draw against what its
docstring says it estimates.
"""

import itertools

import numpy as np
import pytest
from _reference import make_problem, ref_example_gradient

from skbatchnet.reduction import REDUCTIONS, reduction_coefficients

WEIGHTS = np.array([0.5, 2.0, 0.0, 1.5, 4.0])


def _reduce(coefficients, G):
    """sum_i c_i g_i for per-example gradients ``G`` (one row each)."""
    return (np.broadcast_to(coefficients, G.shape[:1])[:, None] * G).sum(axis=0)


def test_registry():
    assert sorted(REDUCTIONS) == ["mean", "sum", "unbiased"]
    # Only 'unbiased' steps on a batch without weight (on the penalty alone).
    assert [r.name for r in REDUCTIONS.values() if r.steps_without_weight] == [
        "unbiased"
    ]


def test_default_reduction_is_mean():
    assert reduction_coefficients(None, 4) == reduction_coefficients(None, 4, "mean")


@pytest.mark.parametrize("n", [1, 3, 8])
def test_mean_without_weights(n):
    c, total = reduction_coefficients(None, n, "mean")
    assert np.isscalar(c) and c == 1.0 / n
    assert total == 1.0
    G = np.random.RandomState(n).randn(n, 4)
    np.testing.assert_allclose(_reduce(c, G), G.mean(axis=0), rtol=1e-14)


def test_mean_with_weights():
    c, total = reduction_coefficients(WEIGHTS, 5, "mean")
    np.testing.assert_allclose(c, WEIGHTS / 8.0, rtol=1e-15)
    assert total == 1.0
    G = np.random.RandomState(0).randn(5, 3)
    weighted_mean = sum(s * g for s, g in zip(WEIGHTS, G)) / WEIGHTS.sum()
    np.testing.assert_allclose(_reduce(c, G), weighted_mean, rtol=1e-14)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_sum_without_weights(n):
    c, total = reduction_coefficients(None, n, "sum")
    assert c == 1.0
    assert total == float(n) and isinstance(total, float)
    G = np.random.RandomState(n).randn(n, 4)
    np.testing.assert_allclose(_reduce(c, G), G.sum(axis=0), rtol=1e-14)


def test_sum_with_weights():
    c, total = reduction_coefficients(WEIGHTS, 5, "sum")
    np.testing.assert_array_equal(c, WEIGHTS)
    assert total == 8.0 and isinstance(total, float)
    G = np.random.RandomState(0).randn(5, 3)
    weighted_sum = sum(s * g for s, g in zip(WEIGHTS, G))
    np.testing.assert_allclose(_reduce(c, G), weighted_sum, rtol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "unbiased"])
def test_unit_weights_equal_no_weights(reduction):
    c_w, total_w = reduction_coefficients(np.ones(6), 6, reduction)
    c, total = reduction_coefficients(None, 6, reduction)
    np.testing.assert_allclose(c_w, np.full(6, c), rtol=1e-15)
    assert total_w == total


def test_mean_of_zero_total_weight_is_refused():
    with pytest.raises(ValueError) as info:
        reduction_coefficients(np.zeros(3), 3, "mean")
    # The whole message, word for word: it names the cause and the fix.
    assert str(info.value) == (
        "The 'mean' reduction divides by the batch's total sample weight, "
        "which is 0 for this batch. Give the batch a positive weight or "
        "skip it."
    )


@pytest.mark.parametrize("total", [1e-300, 0.25, 1.0])
def test_mean_accepts_any_positive_total_weight(total):
    # Only a total of exactly 0 has no mean; a small total is a valid batch.
    sw = np.array([0.0, 1.0, 3.0]) * (total / 4.0)
    c, c_total = reduction_coefficients(sw, 3, "mean")
    np.testing.assert_allclose(c, [0.0, 0.25, 0.75], rtol=1e-15)
    assert c_total == 1.0


@pytest.mark.parametrize("factor", [1.0, 2.0, 0.5, 0.0])
@pytest.mark.parametrize("sw", [None, WEIGHTS])
@pytest.mark.parametrize("reduction", ["mean", "sum", "unbiased"])
def test_scaled_coefficients(reduction, sw, factor):
    c, total = reduction_coefficients(sw, len(WEIGHTS), reduction)
    got_c, got_total = reduction_coefficients(sw, len(WEIGHTS), reduction).scaled(
        factor
    )
    np.testing.assert_array_equal(got_c, np.multiply(c, factor))
    assert got_total == total * factor


@pytest.mark.parametrize("reduction", ["avg", "Mean", None])
def test_unknown_reduction_is_refused(reduction):
    with pytest.raises(
        ValueError, match=r"reduction must be one of \['mean', 'sum', 'unbiased'\]"
    ):
        reduction_coefficients(None, 3, reduction)


# -- moved from test_backprop.py: values and errors, also through the network --
W4 = np.array([1.0, 3.0, 0.0, 4.0])


@pytest.mark.parametrize(
    "sw, reduction, c, total",
    [
        (None, "mean", [0.25] * 4, 1.0),
        (W4, "mean", [0.125, 0.375, 0.0, 0.5], 1.0),
        (None, "sum", [1.0] * 4, 4.0),
        (W4, "sum", W4, 8.0),
        (np.zeros(4), "sum", [0.0] * 4, 0.0),
    ],
)
def test_reduction_coefficients_values(sw, reduction, c, total):
    got_c, got_total = reduction_coefficients(sw, 4, reduction)
    np.testing.assert_allclose(np.broadcast_to(got_c, 4), c, rtol=1e-15, atol=0)
    assert got_total == total


def test_reduction_coefficients_errors():
    with pytest.raises(ValueError):
        reduction_coefficients(np.zeros(3), 3, "mean")
    for bad in ("avg", "MEAN", None):
        with pytest.raises(ValueError):
            reduction_coefficients(None, 3, bad)
    net, X, Y, _ = make_problem("squared_error", 1)
    with pytest.raises(ValueError):
        net.batch_gradient(X, Y, reduction="avg")
    with pytest.raises(ValueError):
        net.batch_gradient(X, Y, np.zeros(len(X)), reduction="mean")


# -- 'unbiased': the weighted sum over the expected batch weight ---------------


@pytest.mark.parametrize("sw", [None, WEIGHTS])
def test_unbiased_divides_by_the_expected_weight(sw):
    c, total = reduction_coefficients(sw, 5, "unbiased", expected_weight=6.4)
    s = np.ones(5) if sw is None else sw
    np.testing.assert_allclose(np.broadcast_to(c, 5), s / 6.4, rtol=1e-15)
    # The penalty's factor is the expectation of sum_i c_i, not its value.
    assert total == 1.0
    G = np.random.RandomState(0).randn(5, 3)
    expected = sum(si * g for si, g in zip(s, G)) / 6.4
    np.testing.assert_allclose(_reduce(c, G), expected, rtol=1e-14)


@pytest.mark.parametrize("sw", [None, WEIGHTS])
def test_unbiased_of_the_whole_set_is_the_mean(sw):
    # Without expected_weight the batch is the whole set, whose weight is
    # its own expectation.
    got = reduction_coefficients(sw, 5, "unbiased")
    mean = reduction_coefficients(sw, 5, "mean")
    np.testing.assert_allclose(got.c, mean.c, rtol=1e-15)
    assert got.total == mean.total == 1.0


def test_unbiased_with_unit_weights_is_the_mean():
    # Unit weights: a batch of b rows of n expects b * n / n = b.
    for b in (1, 3, 8):
        c, total = reduction_coefficients(None, b, "unbiased", expected_weight=b)
        assert (c, total) == reduction_coefficients(None, b, "mean")


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_unbiased_needs_a_positive_expected_weight(bad):
    with pytest.raises(ValueError, match="expected batch weight") as info:
        reduction_coefficients(WEIGHTS, 5, "unbiased", expected_weight=bad)
    assert "expected_weight > 0" in str(info.value)
    # A batch of zero weight has no default expectation either.
    with pytest.raises(ValueError, match="total sample weight, which is 0"):
        reduction_coefficients(np.zeros(3), 3, "unbiased")


def _expected_step(reduction, net, X, Y, sw, alpha, batch):
    """E[sum_B c_i g_i] over every batch of ``batch`` rows, each equally likely
    (a shuffled epoch's first batch), with g_i from the hand-written backprop."""
    n, S = len(X), sw.sum()
    per = [ref_example_gradient(net, X[i], Y[i], alpha, S) for i in range(n)]
    flat = np.array([np.concatenate([a.ravel() for a in g[0] + g[1]]) for g in per])
    steps = []
    for rows in itertools.combinations(range(n), batch):
        rows = list(rows)
        if sw[rows].sum() == 0:
            steps.append(np.zeros(flat.shape[1]))  # 'mean' and 'sum' skip it
            continue
        c, _ = reduction_coefficients(
            sw[rows], batch, reduction, expected_weight=batch * S / n
        )
        steps.append(np.asarray(c) @ flat[rows])
    return np.mean(steps, axis=0), flat.T @ sw / S  # and grad E


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_unbiased_is_unbiased_and_mean_is_not_under_weights(batch):
    net, X, Y, sw = make_problem("squared_error", 2, n=7)
    sw[1] = 0.3  # the reference problem's zero weight would skip batches
    alpha = 0.5
    step, grad_E = _expected_step("unbiased", net, X, Y, sw, alpha, batch)
    np.testing.assert_allclose(step, grad_E, rtol=1e-12, atol=1e-14)
    # 'sum' is unbiased for (batch S / n) grad E under any weights.
    step, _ = _expected_step("sum", net, X, Y, sw, alpha, batch)
    np.testing.assert_allclose(step, batch * sw.sum() / 7 * grad_E, rtol=1e-12)
    # 'mean' divides by the batch's own weight: biased under unequal weights
    # (and at batch 1 it is the unweighted mean of the g_i).
    step, _ = _expected_step("mean", net, X, Y, sw, alpha, batch)
    assert np.abs(step - grad_E).max() > 1e-3 * np.abs(grad_E).max()
    if batch == 1:
        _, unweighted = _expected_step("mean", net, X, Y, np.ones(7), alpha, 1)
        # Only the penalty's share alpha / S differs from the unit-weight set.
        penalty = np.zeros_like(step)
        flat_W = np.concatenate([W.ravel() for W in net.coefs])
        penalty[: flat_W.size] = alpha * flat_W * (1 / sw.sum() - 1 / 7)
        np.testing.assert_allclose(step, unweighted + penalty, rtol=1e-12)
