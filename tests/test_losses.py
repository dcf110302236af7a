"""Output losses (``skbatchnet._losses``) against their formulas.

The oracles are the textbook formulas written here from probabilities, and
central finite differences of the per-example loss with respect to the
logits ``Z``: with a canonical link that derivative must be ``f(Z) - Y``.
"""

import warnings

import numpy as np
import pytest
from scipy.special import xlogy

from skbatchnet._losses import LOSSES

OUT_ACTIVATIONS = {
    "squared_error": "identity",
    "poisson": "exp",
    "binary_log_loss": "logistic",
    "log_loss": "softmax",
}


def _logits(n=6, k=3, seed=0, scale=1.5):
    return scale * np.random.RandomState(seed).randn(n, k)


def _targets(name, n=6, k=3, seed=1):
    rng = np.random.RandomState(seed)
    if name == "squared_error":
        return rng.randn(n, k)
    if name == "poisson":
        return rng.poisson(2.0, (n, k)).astype(float)  # zeros included
    if name == "binary_log_loss":
        return (rng.rand(n, k) < 0.5).astype(float)
    return np.eye(k)[rng.randint(0, k, n)]  # one-hot rows


def _textbook_losses(name, Y, Z):
    """Per-example losses from the prediction, as usually written."""
    if name == "squared_error":
        return 0.5 * ((Y - Z) ** 2).sum(axis=1)
    if name == "poisson":
        mu = np.exp(Z)
        # half the Poisson deviance: y log(y / mu) - y + mu
        return (xlogy(Y, Y) - Y * np.log(mu) - Y + mu).sum(axis=1)
    if name == "binary_log_loss":
        p = 1.0 / (1.0 + np.exp(-Z))
        return -(Y * np.log(p) + (1 - Y) * np.log(1 - p)).sum(axis=1)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    return -(Y * np.log(P)).sum(axis=1)


def _textbook_activation(name, Z):
    if name == "squared_error":
        return Z.copy()
    if name == "poisson":
        return np.exp(Z)
    if name == "binary_log_loss":
        return 1.0 / (1.0 + np.exp(-Z))
    return np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)


def _finite_difference(name, Y, Z, h=1e-6):
    """d loss_i / d z_ij by central differences (loss_i depends on row i only)."""
    loss = LOSSES[name]
    G = np.empty_like(Z)
    for j in range(Z.shape[1]):
        up, down = Z.copy(), Z.copy()
        up[:, j] += h
        down[:, j] -= h
        G[:, j] = (loss.per_example(Y, up) - loss.per_example(Y, down)) / (2 * h)
    return G


def test_registry_pairs_each_loss_with_its_canonical_activation():
    assert {name: loss.out_activation for name, loss in LOSSES.items()} == (
        OUT_ACTIVATIONS
    )
    assert all(loss.name == name for name, loss in LOSSES.items())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_per_example_loss_matches_the_textbook_formula(name):
    Y, Z = _targets(name), _logits()
    losses = LOSSES[name].per_example(Y, Z)
    assert losses.shape == (6,)
    np.testing.assert_allclose(losses, _textbook_losses(name, Y, Z), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_activation_matches_the_formula_and_writes_into_out(name):
    Z = _logits()
    out = np.full_like(Z, np.nan)
    result = LOSSES[name].activation(Z, out)
    assert result is out
    np.testing.assert_allclose(out, _textbook_activation(name, Z), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_error_is_the_gradient_of_the_loss_by_finite_differences(name):
    Y, Z = _targets(name), _logits()
    Z_before = Z.copy()
    out = np.full_like(Z, np.nan)
    losses = LOSSES[name].error(Y, Z, out)
    np.testing.assert_array_equal(Z, Z_before)  # the logits are only read
    np.testing.assert_allclose(losses, LOSSES[name].per_example(Y, Z), rtol=1e-14)
    np.testing.assert_allclose(out, _finite_difference(name, Y, Z), atol=1e-7)
    # ... which is f(Z) - Y, the canonical-link identity
    np.testing.assert_allclose(out, _textbook_activation(name, Z) - Y, atol=1e-14)


def test_log_loss_error_is_the_gradient_for_soft_targets_too():
    # log sum exp(z) - sum y z has gradient softmax(z) - y for any targets,
    # not only one-hot rows (label smoothing, averaged targets).
    Y = np.random.RandomState(2).dirichlet(np.ones(4), size=5)
    Z = _logits(n=5, k=4)
    out = np.empty_like(Z)
    LOSSES["log_loss"].error(Y, Z, out)
    np.testing.assert_allclose(out, _finite_difference("log_loss", Y, Z), atol=1e-7)


def test_squared_error_is_half_the_squared_norm_summed_over_outputs():
    Y = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    Z = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
    # 0.5 * (1 + 4 + 9) and 0.5 * (1 + 1 + 4)
    np.testing.assert_array_equal(LOSSES["squared_error"].per_example(Y, Z), [7.0, 3.0])


def test_poisson_loss_is_zero_at_a_perfect_fit():
    Y = np.array([[0.0, 1.0, 4.0]])
    Z = np.log(np.array([[1e-300, 1.0, 4.0]]))
    np.testing.assert_allclose(LOSSES["poisson"].per_example(Y, Z), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "name, Y, Z, expected",
    [
        # log(1 + exp(z)) - y z: ~0 when right, ~|z| when wrong
        ("binary_log_loss", [[1.0, 0.0]], [[1e3, -1e3]], [0.0]),
        ("binary_log_loss", [[0.0, 1.0]], [[1e3, -1e3]], [2e3]),
        ("binary_log_loss", [[0.0]], [[-1e300]], [0.0]),
        ("binary_log_loss", [[1.0]], [[-1e300]], [1e300]),
        # log sum exp(z) - z_y: the logit gap to the largest class
        ("log_loss", [[1.0, 0.0, 0.0]], [[1e3, 0.0, -1e3]], [0.0]),
        ("log_loss", [[0.0, 0.0, 1.0]], [[1e3, 0.0, -1e3]], [2e3]),
        ("log_loss", [[0.0, 1.0]], [[1e300, -1e300]], [2e300]),
        # exp(z) - y z + y log y - y with exp(z) underflowing to 0
        ("poisson", [[0.0, 2.0]], [[-1e3, -1e3]], [2e3 + 2 * np.log(2) - 2]),
        ("squared_error", [[0.0]], [[1e150]], [0.5e300]),
    ],
)
def test_stable_at_extreme_logits(name, Y, Z, expected):
    Y, Z = np.array(Y), np.array(Z)
    out = np.empty_like(Z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # underflow to 0 is the right answer here; overflow or NaN is not
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            losses = LOSSES[name].error(Y, Z, out)
    np.testing.assert_allclose(losses, expected, rtol=1e-12, atol=1e-12)
    assert np.isfinite(out).all()
    if name in ("binary_log_loss", "log_loss"):
        # f(Z) - Y with f(Z) a probability: saturates at 0 or -1/+1
        np.testing.assert_allclose(out, _saturated(name, Z) - Y, atol=1e-12)


def _saturated(name, Z):
    if name == "binary_log_loss":
        return (Z > 0).astype(float)
    return (Z == Z.max(axis=1, keepdims=True)).astype(float)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_logits_stay_float32(name):
    Y, Z = _targets(name).astype(np.float32), _logits().astype(np.float32)
    out = np.empty_like(Z)
    losses = LOSSES[name].error(Y, Z, out)
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        losses, _textbook_losses(name, Y.astype(float), Z.astype(float)), rtol=1e-4
    )
