"""Divergence: a fit that blows up says where and why, and changes nothing.

A non-finite loss or step raises a ValueError that names the epoch, the
batch, the learning rate and the remedies; the estimator is left as it was
before the call (no fit, the previous fit, or the previous partial_fit).
"""

import math
import re

import numpy as np
import pytest
from conftest import (
    SMALL,
    Snapshot,
    make_data,
    pickled_state,
    use_numpy_epochs,
)

import skbatchnet.backprop
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

X40, Y_REG40, Y_CLS40 = make_data(labels="balanced")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "Est, y, params",
    [
        (BatchMLPRegressor, Y_REG40, dict(solver="sgd", learning_rate_init=1e3)),
        (BatchMLPClassifier, Y_CLS40, dict(solver="sgd", learning_rate_init=1e20)),
    ],
    ids=["regressor", "classifier"],
)
def test_partial_fit_diverging_from_huge_learning_rate_changes_nothing(Est, y, params):
    # One step on one row stays finite, twice; the next pass diverges.
    est = Est(batch_size=5, **params, **SMALL)
    kw = {"classes": [0, 1, 2]} if Est is BatchMLPClassifier else {}
    est.partial_fit(X40[:1], y[:1], **kw).partial_fit(X40[1:2], y[1:2])
    snap = Snapshot(est)
    with pytest.raises(ValueError, match="learning_rate_init"):
        est.partial_fit(X40, y)
    snap.assert_matches(est)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _count_steps(monkeypatch):
    """Record whether each minibatch loss was finite, in order."""
    original = skbatchnet.backprop.Network.gradient
    finite = []

    def batch_gradient(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        finite.append(bool(np.isfinite(result[0])))
        return result

    use_numpy_epochs(monkeypatch)
    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", batch_gradient)
    return finite


DIVERGING = {
    # huge learning rate, unscaled data
    "sgd-lr-1e3": (
        BatchMLPRegressor,
        dict(solver="sgd", learning_rate_init=1e3, batch_size=10),
        100.0,
        60,
    ),
    # 'sum' with big batches at the default rate, data not scaled
    "sum-big-batches": (
        BatchMLPRegressor,
        dict(solver="sgd", gradient_reduction="sum", batch_size=200),
        10.0,
        400,
    ),
    "classifier-sgd": (
        BatchMLPClassifier,
        dict(solver="sgd", learning_rate_init=1e20, batch_size=1),
        1.0,
        40,
    ),
    # The loss of the only step is finite; the step itself overflows.
    "last-step-overflows": (
        BatchMLPRegressor,
        dict(solver="sgd", learning_rate_init=1e300, batch_size="full", max_iter=1),
        1e10,
        30,
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", sorted(DIVERGING))
def test_divergence_message_names_epoch_batch_rate_and_remedies(monkeypatch, case):
    Est, params, scale, n = DIVERGING[case]
    X, y_reg, y_cls = make_data(n=n, labels="balanced")
    y = y_cls if Est is BatchMLPClassifier else y_reg * scale
    params = {"max_iter": 20, **params}
    n_batches = {10: n // 10, 200: n // 200, 1: n, "full": 1}[params["batch_size"]]
    finite = _count_steps(monkeypatch)
    est = Est(**params, **SMALL)
    with pytest.raises(ValueError) as info:
        est.fit(X * scale, y)
    msg = str(info.value)
    # where it happened: the first non-finite batch loss, or else the last
    # step taken (whose update overflowed)
    step = finite.index(False) if False in finite else len(finite) - 1
    epoch, batch = divmod(step, n_batches)
    assert re.search(rf"\bepoch {epoch + 1}\b", msg), msg
    assert re.search(rf"\bbatch {batch + 1}\b", msg), msg
    assert re.search("learning.rate", msg), msg
    lr = params["learning_rate_init"] if "learning_rate_init" in params else 1e-3
    numbers = [float(x) for x in _NUMBER.findall(msg)]
    assert any(math.isclose(x, lr, rel_tol=1e-3) for x in numbers), msg
    assert "learning_rate_init" in msg
    assert "StandardScaler" in msg or "scale" in msg.lower()
    assert ("'mean'" in msg) == (params.get("gradient_reduction") == "sum"), msg
    assert not hasattr(est, "coefs_")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize(
    "Est, y, diverging",
    [
        (BatchMLPRegressor, Y_REG40, dict(learning_rate_init=1e3)),
        (
            BatchMLPRegressor,
            Y_REG40,
            dict(gradient_reduction="sum", learning_rate_init=1.0),
        ),
        (BatchMLPClassifier, Y_CLS40, dict(learning_rate_init=1e20)),
    ],
    ids=["regressor-lr", "regressor-sum", "classifier-lr"],
)
def test_diverging_refit_keeps_previous_fit(Est, y, diverging, warm_start):
    est = Est(solver="sgd", batch_size=10, max_iter=5, **SMALL).fit(X40, y)
    est.set_params(warm_start=warm_start, **diverging)
    snap = Snapshot(est)
    expected = est.predict(X40)
    with pytest.raises(ValueError, match="learning_rate_init"):
        est.fit(X40, y)
    snap.assert_matches(est)
    assert np.array_equal(est.predict(X40), expected)


# a rate and a reduction that diverge on unscaled data from the first pass
HUGE = dict(solver="sgd", learning_rate_init=1e4, gradient_reduction="sum")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_and_rolls_back():
    X, y, _ = make_data(n=60)
    with pytest.raises(ValueError, match="learning_rate_init"):
        BatchMLPRegressor(max_iter=5, batch_size=10, **HUGE, **SMALL).fit(X, y)

    est = BatchMLPRegressor(solver="sgd", max_iter=5, batch_size=10, **SMALL).fit(X, y)
    est.set_params(warm_start=True, **HUGE)  # same batch_size=10
    before = pickled_state(est)
    with pytest.raises(ValueError, match="learning_rate_init.*gradient_reduction"):
        est.fit(X, y)
    assert pickled_state(est) == before

    # One step on one row stays finite; the next pass over the data diverges.
    inc = BatchMLPRegressor(batch_size=10, **HUGE, **SMALL)
    inc.partial_fit(X[:1], y[:1])
    before = pickled_state(inc)
    with pytest.raises(ValueError, match="learning.rate"):
        inc.partial_fit(X, y)
    assert pickled_state(inc) == before
    assert (inc.n_iter_, inc.t_) == (1, 1)
