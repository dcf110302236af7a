"""Poisson batches (DP-SGD's batching policy) and both tiers running them.

Each step takes every row with probability q = batch_size / n: sizes are
Binomial(n, q), rows within a batch are distinct, and an epoch has
ceil(n / batch_size) steps. Both tiers must take the same steps on the same
epoch, empty batches included.
"""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from skbatchnet._compiled import CompiledEpochs
from skbatchnet._optimizers import SGD
from skbatchnet._training import NumpyEpochs, Step, TrainingData
from skbatchnet.backprop import Network
from skbatchnet.batching import PoissonBatcher


def test_batch_sizes_are_binomial_with_mean_q_n():
    n, b = 500, 20
    batcher = PoissonBatcher(b, np.random.default_rng(1))
    epochs = batcher.iter_orders(n)
    sizes = np.concatenate(
        [np.diff(next(epochs).bounds, axis=1).ravel() for _ in range(400)]
    )
    assert sizes.size == 400 * math.ceil(n / b)
    q = b / n
    # 10,000 draws: the mean within 4 standard errors of q n, the variance
    # within 10% of n q (1 - q).
    assert abs(sizes.mean() - q * n) < 4 * math.sqrt(n * q * (1 - q) / sizes.size)
    assert sizes.var() == pytest.approx(n * q * (1 - q), rel=0.1)


def test_rows_of_a_batch_are_distinct_and_every_row_is_drawn():
    n = 50
    batcher = PoissonBatcher(10, np.random.default_rng(2))
    epoch = next(batcher.iter_orders(n))
    drawn = set()
    for rows in batcher.batches(epoch, n):
        assert len(set(rows.tolist())) == len(rows)
        assert ((0 <= rows) & (rows < n)).all()
        drawn.update(rows.tolist())
    counts = np.bincount(
        np.concatenate([next(batcher.iter_orders(n)).order for _ in range(200)]),
        minlength=n,
    )
    # Each row is drawn q per step, 5 steps an epoch: about 200 times.
    assert counts.min() > 120 and counts.max() < 290


def test_the_generator_decides_the_batches():
    def first(seed):
        return next(PoissonBatcher(8, np.random.default_rng(seed)).iter_orders(40))

    a, b, c = first(3), first(3), first(4)
    assert np.array_equal(a.order, b.order) and np.array_equal(a.bounds, b.bounds)
    assert not np.array_equal(a.order, c.order)
    with pytest.raises(TypeError, match="numpy Generator"):
        next(PoissonBatcher(8, 0).iter_orders(40))


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("csr", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "unbiased", "mean"])
def test_both_tiers_take_the_same_poisson_steps(reduction, csr, poisson):
    rng = np.random.RandomState(0)
    X, Y = rng.randn(30, 4), rng.randn(30, 2)
    w = rng.uniform(0.2, 1.0, 30)
    w[:10] = 0  # batches without weight too
    initial = Network.initialize([4, 6, 2], activation="tanh", random_state=0)
    # With expected_rows the step knows its batches are Poisson batches.
    expected_rows = 1.0 if poisson else None
    step = Step(
        alpha=0.1,
        reduction=reduction,
        max_gradient_norm=0.5,
        expected_rows=expected_rows,
    )
    results = []
    for runner_class in (NumpyEpochs, CompiledEpochs):
        net = Network(
            [W.copy() for W in initial.coefs],
            [b.copy() for b in initial.intercepts],
            activation="tanh",
            loss="squared_error",
        )
        data = TrainingData(sp.csr_matrix(X) if csr else X, Y, w, w.sum())
        # A small expected batch: some of the 60 steps are empty.
        batcher = PoissonBatcher(1, np.random.default_rng(5))
        runner = runner_class(net, data, batcher, step)
        optimizer = SGD([net.parameters], 0.05, "constant", 0.9, True)
        epochs = batcher.iter_orders(30)
        sums = [runner.run(next(epochs), optimizer, None) for _ in range(2)]
        results.append((net.parameters.copy(), sums))
    (p_numpy, s_numpy), (p_compiled, s_compiled) = results
    np.testing.assert_allclose(p_compiled, p_numpy, rtol=1e-12, atol=1e-14)
    for a, b in zip(s_numpy, s_compiled):
        assert (a.seen, a.steps, a.clipped) == (b.seen, b.steps, b.clipped)
        assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-12)
        if poisson and reduction != "mean":
            assert a.steps == 30  # every step, empty or weightless, is taken
        else:
            assert a.steps < 30  # empty batches took no step
