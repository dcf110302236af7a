"""Reduction coefficients (``skbatchnet.reduction``) against their formulas.

``'mean'`` gives ``c_i = s_i / sum_j s_j`` (``1/n`` without weights) and
total 1; ``'sum'`` gives ``c_i = s_i`` (1 without weights) and total
``sum_i s_i`` (``n``). The reduced gradient ``sum_i c_i g_i`` is checked
against the weighted mean and the weighted sum written out here.
"""

import numpy as np
import pytest
from _reference import make_problem

from skbatchnet.reduction import REDUCTIONS, reduction_coefficients

WEIGHTS = np.array([0.5, 2.0, 0.0, 1.5, 4.0])


def _reduce(coefficients, G):
    """sum_i c_i g_i for per-example gradients ``G`` (one row each)."""
    return (np.broadcast_to(coefficients, G.shape[:1])[:, None] * G).sum(axis=0)


def test_registry():
    assert sorted(REDUCTIONS) == ["mean", "sum"]


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


@pytest.mark.parametrize("reduction", ["mean", "sum"])
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
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_scaled_coefficients(reduction, sw, factor):
    c, total = reduction_coefficients(sw, len(WEIGHTS), reduction)
    got_c, got_total = reduction_coefficients(sw, len(WEIGHTS), reduction).scaled(
        factor
    )
    np.testing.assert_array_equal(got_c, np.multiply(c, factor))
    assert got_total == total * factor


@pytest.mark.parametrize("reduction", ["avg", "Mean", None])
def test_unknown_reduction_is_refused(reduction):
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum'\]"):
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
