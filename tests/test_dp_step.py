"""DP-SGD's noisy step, in both tiers, against a slow reference.

The reference materializes each example's gradient by hand
(``_reference.ref_example_gradient``), clips it, weights it, sums the batch,
adds ``sigma C z`` with ``z`` drawn from a copy of the generator in the
order the step draws it, divides by the reduction's public divisor and adds
the penalty at its expectation: the step written out from the issue's math.
It reads from the code under test only the epoch's Poisson batches (tested in
``test_poisson.py``) and the network's parameters.
"""

import copy

import numpy as np
import pytest
import scipy.sparse as sp
from _reference import make_problem, ref_example_gradient

from skbatchnet._compiled import CompiledEpochs
from skbatchnet._gaussian import standard_normal
from skbatchnet._optimizers import SGD, Adam
from skbatchnet._training import NumpyEpochs, Step, TrainingData
from skbatchnet.backprop import Network
from skbatchnet.batching import PoissonBatcher

RUNNERS = {"numpy": NumpyEpochs, "compiled": CompiledEpochs}


def _flat_example_gradient(net, x, y):
    coefs, intercepts = ref_example_gradient(net, x, y, 0.0, 1.0)
    return np.concatenate([g.ravel() for g in coefs + intercepts])


@pytest.mark.parametrize("tier", sorted(RUNNERS))
@pytest.mark.parametrize("reduction", ["unbiased", "sum"])
@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("csr", [False, True])
@pytest.mark.parametrize(
    "loss, n_outputs, activation",
    [("squared_error", 2, "tanh"), ("log_loss", 3, "relu"), ("poisson", 1, "logistic")],
)
def test_a_noisy_epoch_equals_the_slow_reference(
    tier, reduction, rows, csr, loss, n_outputs, activation
):
    net, X, Y, sw = make_problem(loss, n_outputs, activation, n=12, seed=3)
    sw = sw / sw.max()  # DP needs weights of at most 1
    n, lr, alpha, C, sigma = X.shape[0], 0.2, 0.3, 0.4, 0.7
    step = Step(
        alpha=alpha,
        reduction=reduction,
        max_gradient_norm=C,
        noise_multiplier=sigma,
        expected_rows=float(rows),
    )
    generator = np.random.default_rng(17)
    batcher = PoissonBatcher(rows, generator)
    epoch = next(batcher.iter_orders(n))
    if rows == 1:  # the small rate gives empty batches, which step too
        assert (np.diff(epoch.bounds, axis=1) == 0).any()
    replay = copy.deepcopy(generator)  # the noise is drawn after the batches
    start = net.parameters.copy()

    data = TrainingData(sp.csr_matrix(X) if csr else X, Y, sw, float(n))
    runner = RUNNERS[tier](net, data, batcher, step, noise=generator)
    optimizer = SGD([net.parameters], lr, "constant", 0.0, False)
    sums = runner.run(epoch, optimizer, None)
    assert sums.steps == len(epoch.bounds)

    theta = start.copy()
    ref = Network.initialize(
        net.layer_units, activation=activation, loss=loss, random_state=0
    )
    q_n = float(rows)  # the expected batch weight q S, with S = n
    for lo, hi in epoch.bounds:
        ref.parameters[...] = theta
        total = np.zeros_like(theta)
        for i in epoch.order[lo:hi]:
            g = _flat_example_gradient(ref, X[i], Y[i])
            total += sw[i] * min(1.0, C / np.linalg.norm(g)) * g
        total += sigma * C * standard_normal(replay.bit_generator, theta.size)
        if reduction == "unbiased":  # divided by q S; the penalty (alpha/S) W
            direction, mass = total / q_n, 1.0
        else:  # 'sum': the penalty at its expected weight q S
            direction, mass = total, q_n
        direction[: ref.n_coefs] += alpha * mass / n * theta[: ref.n_coefs]
        theta = theta - lr * direction
    np.testing.assert_allclose(net.parameters, theta, rtol=1e-10, atol=1e-12)
    # Both drew the same numbers: the generator is left in the same state.
    assert generator.bit_generator.state == replay.bit_generator.state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("average", [False, True])
def test_both_tiers_add_the_same_noise(dtype, solver, average):
    rng = np.random.RandomState(0)
    X, Y = rng.randn(40, 5).astype(dtype), rng.randn(40, 2).astype(dtype)
    w = rng.uniform(0.1, 1.0, 40).astype(dtype)
    initial = Network.initialize([5, 7, 2], activation="tanh", random_state=0)
    step = Step(
        alpha=0.01,
        reduction="unbiased",
        max_gradient_norm=0.5,
        noise_multiplier=1.3,
        expected_rows=3.0,
    )
    results = []
    for runner_class in (NumpyEpochs, CompiledEpochs):
        net = Network(
            [W.astype(dtype) for W in initial.coefs],
            [b.astype(dtype) for b in initial.intercepts],
            activation="tanh",
            loss="squared_error",
        )
        generator = np.random.default_rng(8)
        batcher = PoissonBatcher(3, generator)
        data = TrainingData(X, Y, w, 40.0)
        runner = runner_class(net, data, batcher, step, noise=generator)
        if solver == "sgd":
            optimizer = SGD([net.parameters], 0.05, "constant", 0.9, True)
        else:
            optimizer = Adam([net.parameters], 0.01, 0.9, 0.999, 1e-8)
        averager = None
        if average:
            from skbatchnet._averaging import WeightAverage

            averager = WeightAverage(net.parameters.size, net.dtype, 1)
        epochs = batcher.iter_orders(40)
        for _ in range(3):
            sums = runner.run(next(epochs), optimizer, averager)
            assert sums.steps == 14  # ceil(40 / 3), empty batches included
            assert sums.seen == 14 * 3  # rows counted as expected, not drawn
        mean = None if averager is None else averager.mean.copy()
        results.append((net.parameters.copy(), mean, generator.bit_generator.state))
    (p_numpy, m_numpy, g_numpy), (p_compiled, m_compiled, g_compiled) = results
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(p_compiled, p_numpy, rtol=rtol, atol=rtol)
    if average:
        np.testing.assert_allclose(m_compiled, m_numpy, rtol=rtol, atol=rtol)
    assert g_numpy == g_compiled


def test_a_noisy_plan_needs_poisson_batches_and_a_public_divisor():
    from skbatchnet import _extension

    plan_module = _extension.epoch_module()
    if plan_module is None:
        pytest.skip("the compiled extension is not built")
    _, plan = plan_module
    X, Y = np.zeros((4, 2)), np.zeros((4, 1))
    kw = dict(activation=0, loss=0, alpha=0.0, total_weight=4.0, chunk_rows=4)
    with pytest.raises(ValueError, match="Poisson batches"):
        plan.EpochPlan([2, 1], X, Y, None, [[0, 4]], reduction=2, noise_std=1.0, **kw)
    with pytest.raises(ValueError, match="'mean'"):
        plan.EpochPlan(
            [2, 1], X, Y, None, [[0, 4]], reduction=0, noise_std=1.0,
            expected_rows=2.0, **kw,
        )  # fmt: skip
    with pytest.raises(ValueError, match="noise_std"):
        plan.EpochPlan([2, 1], X, Y, None, [[0, 4]], reduction=2, noise_std=-1, **kw)

    from skbatchnet import _epoch

    quiet = plan.EpochPlan([2, 1], X, Y, None, [[0, 4]], reduction=2, **kw)
    noisy = plan.EpochPlan(
        [2, 1], X, Y, None, [[0, 4]], reduction=2, noise_std=1.0,
        expected_rows=2.0, **kw,
    )  # fmt: skip
    state = plan.OptimizerState(0, np.zeros(3), learning_rate=0.1, velocity=np.zeros(3))
    source = plan.NoiseSource(np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="only with one"):
        _epoch.run_epoch(quiet, state, None, None, None, source)
    with pytest.raises(ValueError, match="only with one"):
        _epoch.run_epoch(noisy, state, None)
    small = plan.NoiseSource(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="holds 2 draws"):
        _epoch.run_epoch(noisy, state, None, None, None, small)
