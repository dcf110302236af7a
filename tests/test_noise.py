"""DP noise drawn in the compiled loop equals numpy's draws, bit for bit.

The loop's kernel (``_noise.pxd``) draws through numpy's random C API from a
Generator's own state; the numpy tier calls ``Generator.standard_normal``.
Given the same state, both must add the same noise and leave the generator
in the same state.
"""

import numpy as np
import pytest

from skbatchnet import _extension


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_loop_draws_what_numpy_draws(dtype):
    plan = _extension.epoch_module()
    if plan is None:
        pytest.skip("the compiled modules are not built")
    _, plan = plan
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    a = np.linspace(-1, 1, 20001).astype(dtype)
    b = a.copy()
    plan.NoiseSource(ours).add_to(a, 0.3)
    b += (0.3 * theirs.standard_normal(b.size)).astype(dtype)
    np.testing.assert_array_equal(a, b)
    assert ours.standard_normal() == theirs.standard_normal()
    # Noise of standard deviation 0.3, within 2% over 20,001 draws.
    assert np.std(a - np.linspace(-1, 1, 20001)) == pytest.approx(0.3, rel=0.02)


def test_the_noise_needs_a_generator():
    plan = _extension.epoch_module()
    if plan is None:
        pytest.skip("the compiled modules are not built")
    with pytest.raises(TypeError, match="numpy Generator"):
        plan[1].NoiseSource(np.random.RandomState(0))
