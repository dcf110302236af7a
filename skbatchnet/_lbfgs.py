"""The L-BFGS run: scipy's quasi-Newton method on the whole-set objective.

Every evaluation is the exact ``E`` and ``grad E`` on all the training data,
so ``batch_size`` and ``gradient_reduction`` do not apply. The bookkeeping
(``Progress``, interruptions, divergence) follows the epoch loop's in
:mod:`skbatchnet._training`.
"""

import math

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._outcome import Penalty, divergence_error
from ._training import Step, interrupted
from ._warn import warn

__all__ = ["train_lbfgs"]


class _Stop(Exception):
    """A callback asked L-BFGS to stop."""


def train_lbfgs(network, data, driver, progress, *, alpha, verbose, report):
    """Minimize the whole-set objective E with the L-BFGS driver.

    ``batch_size`` and ``gradient_reduction`` do not apply: every evaluation
    is the exact ``E`` and ``grad E`` on all the data. A stop request from
    ``report`` or a KeyboardInterrupt ends the run at the last completed
    iteration. A non-finite objective raises a ValueError.

    Returns
    -------
    loss : float
        The objective at the solution.
    """
    n = data.n_samples
    workspace = network.workspace(n)
    # Every evaluation is E on all the rows: the 'mean' of the whole set.
    every_row, whole_set = slice(None), Step(alpha=alpha, reduction="mean")
    start = network.parameters.astype(np.float64)
    # The last completed iteration: its weights and loss, and the function
    # evaluations (passes over the data) since the one before.
    last = {"x": start, "loss": None, "evaluations": 0, "iterations": 0}
    largest = float(np.finfo(network.dtype).max)
    penalty = Penalty(alpha, data.total, start.size, largest)

    def fun(x):
        network.parameters[...] = x
        _, _, loss, grad, _ = data.gradient(
            network, every_row, scale=1.0, step=whole_set, workspace=workspace
        )
        # Only the first evaluation blames the data: later ones are trial
        # points of a line search, which backs off from a non-finite value.
        if not math.isfinite(loss) and "evaluated" not in last:
            where = "the loss was non-finite at the initial weights"
            raise divergence_error(where, stepped=False, penalty=penalty)
        last["evaluated"] = loss
        last["evaluations"] += 1
        return loss, grad.astype(np.float64)

    def callback(xk):
        loss = last["evaluated"]
        last.update(x=xk.copy(), loss=loss, iterations=last["iterations"] + 1)
        progress.record(loss, 1, last["evaluations"] * n, batch_size=n)
        last["evaluations"] = 0
        if verbose:
            print(f"Iteration {len(progress.loss_curve)}, loss = {loss:.8f}")
        if report(loss):
            raise _Stop

    result = None
    try:
        result = driver.minimize(fun, start, callback=callback)
    except _Stop:
        pass
    except KeyboardInterrupt:
        progress.n_iter = last["iterations"]
        interrupted(progress)
    if result is None:  # stopped early: keep the last completed iteration
        network.parameters[...] = last["x"]
        progress.n_iter, loss = last["iterations"], last["loss"]
        if loss is None:  # no iteration completed
            loss = data.objective(network, alpha)
    else:
        network.parameters[...] = result.x
        progress.n_iter = min(int(result.nit), driver.max_iter)
        loss = float(result.fun)
    if not (math.isfinite(loss) and np.isfinite(network.parameters).all()):
        where = f"the loss became non-finite in L-BFGS iteration {progress.n_iter}"
        raise divergence_error(where, stepped=True, penalty=penalty)
    progress.best_loss = min(progress.loss_curve + [loss])
    if result is not None and result.status != 0:
        warn(
            f"lbfgs failed to converge after {progress.n_iter} iterations "
            f"(status={result.status}): {result.message}. Increase max_iter "
            "or max_fun, or scale the data.",
            ConvergenceWarning,
        )
    return loss
