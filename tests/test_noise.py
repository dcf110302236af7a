"""DP noise: the sampler is standard normal, and both tiers draw the same bits.

The sampler (``_gaussian.py``, a ziggurat over raw 64-bit draws) is checked
against the normal distribution itself (scipy's CDF: Kolmogorov-Smirnov, a
chi-square over bins out to the tails, the frequency beyond the ziggurat's
tail start and beyond 4, the moments); the compiled loop's kernel
(``_noise.pxd``) against the sampler, bit for bit, with the generator left in
the same state.
"""

import math

import numpy as np
import pytest
from scipy import stats

from skbatchnet import _extension
from skbatchnet._gaussian import TABLES, standard_normal


def _plan_module():
    modules = _extension.epoch_module()
    if modules is None:
        pytest.skip("the compiled modules are not built")
    return modules[1]


def test_the_tables_close_the_ziggurat():
    # 256 layers of equal area under exp(-x^2/2), the top one closing at
    # x = 0, height 1; the tail start of the published 256-layer ziggurat.
    assert TABLES.r == pytest.approx(3.6541528853610088, rel=1e-14)
    x, y = TABLES.x, TABLES.y
    assert x[-1] == 0 and y[-1] == 1 and (np.diff(x[1:]) < 0).all()
    areas = x[1:-1] * (y[2:] - y[1:-1])  # the layers above the base
    tail = math.sqrt(math.pi / 2) * math.erfc(TABLES.r / math.sqrt(2))
    base = TABLES.r * y[1] + tail
    np.testing.assert_allclose(areas, base, rtol=1e-12)


def test_the_sampler_is_standard_normal():
    z = standard_normal(np.random.PCG64(11), 2_000_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    edges = np.concatenate([[-np.inf], np.linspace(-4.5, 4.5, 181), [np.inf]])
    observed, _ = np.histogram(z, edges)
    expected = np.diff(stats.norm.cdf(edges)) * z.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    for cut in (TABLES.r, 4.0):  # the tail path, and deep in it
        count, mean = (np.abs(z) > cut).sum(), 2 * stats.norm.sf(cut) * z.size
        assert abs(count - mean) < 4.5 * math.sqrt(mean)
    assert abs(z.mean()) < 4.5 / math.sqrt(z.size)
    assert z.var() == pytest.approx(1.0, abs=4.5 * math.sqrt(2 / z.size))
    # Both signs at every layer: symmetric.
    assert stats.kstest(z, -z).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_loop_draws_what_the_numpy_tier_draws(dtype):
    plan = _plan_module()
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    start = np.linspace(-1, 1, 200_001).astype(dtype)
    a, b = start.copy(), start.copy()
    plan.NoiseSource(ours, a.size).add_to(a, 0.3)
    b += (0.3 * standard_normal(theirs.bit_generator, b.size)).astype(dtype)
    np.testing.assert_array_equal(a, b)
    assert ours.bit_generator.state == theirs.bit_generator.state
    noise = (a - start).astype(np.float64) / 0.3
    assert stats.kstest(noise, "norm").pvalue > 1e-3


def test_the_noise_needs_a_generator_of_64_bit_draws():
    plan = _plan_module()
    with pytest.raises(TypeError, match="numpy Generator"):
        plan.NoiseSource(np.random.RandomState(0), 10)
    with pytest.raises(TypeError, match="64-bit"):
        plan.NoiseSource(np.random.Generator(np.random.MT19937(0)), 10)
    with pytest.raises(TypeError, match="64-bit"):
        standard_normal(np.random.MT19937(0), 10)
    with pytest.raises(ValueError, match="entries"):
        plan.NoiseSource(np.random.default_rng(0), 10).add_to(np.zeros(11), 1.0)
