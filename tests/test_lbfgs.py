"""The L-BFGS run (skbatchnet._lbfgs) against exact oracles.

The trajectory itself is checked against scipy's L-BFGS-B on the public core
in test_training.py; these tests check what the run reports along the way.
"""

import numpy as np
import pytest

from skbatchnet import BatchMLPRegressor
from skbatchnet._callbacks import TaskReporter
from skbatchnet.backprop import Network

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X = RNG.randn(30, 4)
Y = X @ RNG.randn(4) + 0.1 * RNG.randn(30)


@pytest.mark.parametrize("weighted", [False, True])
def test_each_iteration_reports_the_objective_at_its_weights(monkeypatch, weighted):
    """The loss handed to the callbacks after each iteration is E at the
    weights of that iteration, recomputed from the public core, and is the
    loss_curve_ entry of that iteration."""
    w = 0.5 + RNG.rand(30) if weighted else None
    reported = []

    def task(self, name, loss):
        est = self.estimator
        net = Network(
            [c.copy() for c in est.coefs_],
            [b.copy() for b in est.intercepts_],
            activation=est.activation,
            loss="squared_error",
        )
        reported.append((name, loss, net))
        return False

    monkeypatch.setattr(TaskReporter, "task", task)
    est = BatchMLPRegressor(
        solver="lbfgs", hidden_layer_sizes=(5,), alpha=0.2, max_iter=6, random_state=3
    ).fit(X, Y, sample_weight=w)
    monkeypatch.undo()
    assert [name for name, _, _ in reported] == ["iteration"] * est.n_iter_
    assert est.n_iter_ == 6
    losses = [loss for _, loss, _ in reported]
    assert losses == est.loss_curve_
    expected = [net.objective(X, Y[:, None], w, alpha=0.2) for _, _, net in reported]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
