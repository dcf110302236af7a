"""What an epoch reports, on both tiers: its loss and its finiteness.

- The epoch loss of float32 training is summed in float64: on one batch of
  200,000 float32 rows it equals, to 1e-6, the float64 sum of the rows'
  losses, computed here by a forward pass of its own in float64 (a float32
  sum would be off by some 1e-5).
- The check after an epoch's last step covers every parameter, biases
  included: a step that overflows only a bias is a divergence of that epoch,
  in the loop and through the estimator, not of the next one.

Each case runs on the numpy specification (``_training.run_epoch``) and on
the compiled loop (through its runner, ``CompiledEpochs``).
"""

import numpy as np
import pytest
from conftest import use_numpy_epochs

from skbatchnet import BatchMLPRegressor, _extension
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._optimizers import SGD
from skbatchnet._outcome import Diverged
from skbatchnet._training import NumpyEpochs, Step, TrainingData
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher

TIERS = [
    "numpy",
    pytest.param(
        "compiled",
        marks=pytest.mark.skipif(
            _extension.epoch_module() is None, reason="no compiled loop"
        ),
    ),
]


def _runner(tier, net, data, batcher, step):
    Runner = NumpyEpochs if tier == "numpy" else CompiledEpochs
    return Runner(net, data, batcher, step)


def _loss_in_float64(coefs, intercepts, X, Y, sample_weight):
    """The weighted mean of the rows' squared errors, a ReLU network's
    forward pass in float64 with the given float32 parameters."""
    A = X.astype(np.float64)
    for layer, (W, b) in enumerate(zip(coefs, intercepts)):
        A = A @ W.astype(np.float64) + b.astype(np.float64)
        if layer < len(coefs) - 1:
            A = np.maximum(A, 0)
    losses = 0.5 * ((A - Y.astype(np.float64)) ** 2).sum(axis=1)
    w = np.ones(len(X)) if sample_weight is None else sample_weight.astype(np.float64)
    return np.dot(w, losses) / w.sum()


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("tier", TIERS)
def test_a_float32_epoch_loss_is_the_float64_sum_of_its_rows_losses(tier, weighted):
    n = 200_000
    rng = np.random.RandomState(0)
    X = rng.randn(n, 5).astype(np.float32)
    Y = (X[:, :1] ** 2 + rng.randn(n, 1)).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2, n).astype(np.float32) if weighted else None
    net = Network.initialize([5, 4, 1], random_state=0, dtype=np.float32)
    # One batch of every row, in one chunk on both tiers: the sum in question
    # runs over all of them.
    assert net.chunk_rows() >= n
    coefs = [W.copy() for W in net.coefs]
    intercepts = [b.copy() for b in net.intercepts]
    total = n if sample_weight is None else float(sample_weight.sum(dtype=np.float64))
    data = TrainingData(X, Y, sample_weight, total)
    runner = _runner(tier, net, data, Minibatcher(n), Step(0.0, "mean"))
    sums = runner.run(None, SGD([net.parameters], 1e-3), None)
    assert sums.steps == 1
    expected = _loss_in_float64(coefs, intercepts, X, Y, sample_weight)
    assert sums.loss_sum / sums.weight_sum == pytest.approx(expected, rel=1e-6)


# Per row, the learning rate times the output error is finite; summed over
# the batch's four rows (reduction 'sum') it is not.
OVERFLOW = {np.float64: (1e8, 1e300), np.float32: (1e4, 3e34)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tier", TIERS)
def test_a_last_step_that_overflows_only_a_bias_diverges_in_its_epoch(tier, dtype):
    # All-zero rows and ReLU units that are off (bias -1) give every weight a
    # zero gradient; only the output bias steps, past the float range.
    target, rate = OVERFLOW[dtype]
    net = Network.initialize([3, 4, 1], random_state=0, dtype=dtype)
    net.intercepts[0][...] = -1
    net.intercepts[1][...] = 0
    coefs = net.parameters[: net.n_coefs].copy()
    X, Y = np.zeros((4, 3), dtype), np.full((4, 1), target, dtype)
    runner = _runner(
        tier, net, TrainingData(X, Y, None, 4.0), Minibatcher(4), Step(0.0, "sum")
    )
    with np.errstate(all="ignore"), pytest.raises(Diverged) as info:
        runner.run(None, SGD([net.parameters], rate), None)
    error = info.value
    assert (error.what, error.batch, error.steps) == ("weights", 1, 1)
    assert np.array_equal(net.parameters[: net.n_coefs], coefs)
    assert not np.isfinite(net.intercepts[1]).any()


@pytest.mark.parametrize("tier", TIERS)
def test_the_estimator_reports_a_bias_overflow_in_its_epoch(tier, monkeypatch):
    # No hidden layer and all-zero rows: the weights' gradient is zero, and
    # the one bias steps past the float range in epoch 1.
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    est = BatchMLPRegressor(
        hidden_layer_sizes=(),
        solver="sgd",
        batch_size=4,
        gradient_reduction="sum",
        learning_rate_init=1e300,
        alpha=0.0,
        max_iter=3,
        random_state=0,
    )
    with np.errstate(all="ignore"), pytest.raises(ValueError) as info:
        est.fit(np.zeros((4, 3)), np.full(4, 1e8))
    assert "the weights became non-finite in epoch 1, batch 1," in str(info.value)
