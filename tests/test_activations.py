"""Hidden-layer activations (``skbatchnet._activations``) against their formulas.

Each activation is checked against its formula written here, each derivative
against central finite differences of that formula, and both for their
in-place contract: ``f(Z)`` overwrites ``Z`` and ``derivative(A, delta)``
overwrites ``delta`` with ``delta * f'(z)`` given only ``A = f(z)``.
"""

import numpy as np
import pytest

from skbatchnet._activations import ACTIVATIONS

FORMULAS = {
    "identity": lambda z: z,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": lambda z: (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z)),
    "relu": lambda z: np.where(z > 0, z, 0.0),
}
NAMES = sorted(FORMULAS)
# relu takes another code path from 2048 values on
SHAPES = [(7, 5), (64, 48)]


def _pre_activations(shape, seed=0, dtype=np.float64):
    Z = 2.0 * np.random.RandomState(seed).randn(*shape)
    # keep clear of relu's kink, where the derivative is one-sided
    Z[np.abs(Z) < 1e-3] = 0.5
    return Z.astype(dtype)


def test_registries_name_the_same_activations():
    assert sorted(ACTIVATIONS) == NAMES
    assert all(name == entry.name for name, entry in ACTIVATIONS.items())
    assert all(callable(entry.derivative) for entry in ACTIVATIONS.values())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_activation_matches_its_formula_in_place(name, shape):
    Z = _pre_activations(shape)
    expected = FORMULAS[name](Z.copy())
    result = ACTIVATIONS[name].function(Z)
    assert result is Z  # the pre-activations are overwritten, nothing allocated
    np.testing.assert_allclose(Z, expected, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_activation_keeps_float32(name):
    Z = _pre_activations((9, 4), dtype=np.float32)
    expected = FORMULAS[name](Z.astype(np.float64))
    result = ACTIVATIONS[name].function(Z)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_differences(name, shape, h=1e-6):
    Z = _pre_activations(shape)
    f = FORMULAS[name]
    slope = (f(Z + h) - f(Z - h)) / (2 * h)
    delta = np.random.RandomState(1).randn(*shape)
    expected = delta * slope
    A = ACTIVATIONS[name].function(Z.copy())
    A_before = A.copy()
    result = ACTIVATIONS[name].derivative(A, delta)
    # identity may hand delta back untouched; the others write into it
    assert result is delta
    np.testing.assert_array_equal(A, A_before)  # the outputs are only read
    np.testing.assert_allclose(result, expected, rtol=1e-7, atol=1e-9)


def test_relu_derivative_is_zero_at_the_kink():
    Z = np.array([[-1.0, 0.0, 1.0]])
    A = ACTIVATIONS["relu"].function(Z)
    delta = ACTIVATIONS["relu"].derivative(A, np.full((1, 3), 5.0))
    np.testing.assert_array_equal(delta, [[0.0, 0.0, 5.0]])


@pytest.mark.parametrize("name", ["logistic", "tanh"])
def test_saturating_activations_stay_finite_at_extreme_inputs(name):
    Z = np.array([[-1e300, -800.0, 0.0, 800.0, 1e300]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        A = ACTIVATIONS[name].function(Z)
        delta = ACTIVATIONS[name].derivative(A, np.ones_like(A))
    low = 0.0 if name == "logistic" else -1.0
    np.testing.assert_array_equal(A[0, [0, 1, 3, 4]], [low, low, 1.0, 1.0])
    np.testing.assert_array_equal(delta[0, [0, 4]], [0.0, 0.0])  # flat tails
    assert delta[0, 2] == (0.25 if name == "logistic" else 1.0)


def test_relu_on_large_arrays_of_changing_sizes_and_dtypes():
    # Large inputs are compared against a buffer of zeros kept between calls;
    # it must stay zeros, whatever the order of sizes and dtypes it served.
    rng = np.random.RandomState(3)
    for size, dtype in [(3000, np.float64), (5000, np.float32), (2500, np.float64)]:
        Z = rng.randn(size // 50, 50).astype(dtype)
        expected = np.where(Z > 0, Z, 0).astype(dtype)
        result = ACTIVATIONS["relu"].function(Z)
        assert result is Z and result.dtype == dtype
        np.testing.assert_array_equal(result, expected)
