"""Stochastic optimizers: they see parameters and gradients, nothing else.

The updates are scikit-learn's (same formulas, same order of floating-point
operations, so the same seed gives the same trajectory), written in place
with buffers allocated once, so a step allocates no parameter-sized arrays.

``step(params, grads)`` consumes ``grads``: the gradient buffers serve as
scratch space once read. Training recomputes them at every step anyway, and
one buffer fewer per parameter vector keeps a small network's optimizer state
in cache, which at batch size 1 is most of the cost of a step.
"""

import numpy as np


class _Optimizer:
    def iteration_ends(self, time_step):
        """Called after each epoch with the number of samples seen so far."""

    def trigger_stopping(self, msg, verbose):
        """Decide whether to stop when the loss no longer improves."""
        if verbose:
            print(msg + " Stopping.")
        return True


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum (heavy ball or Nesterov).

    ``v <- momentum * v - lr * g``; the step is ``v`` or, with Nesterov,
    ``momentum * v - lr * g``.

    With Nesterov momentum the state kept is ``momentum * v`` rather than
    ``v``: the step needs ``momentum * v`` right after ``v`` is updated, and
    the next update needs the very same product, so storing it saves a pass
    over the parameters and a buffer. Each rounded intermediate is the one
    scikit-learn computes, so the trajectory is unchanged.

    Parameters
    ----------
    params : list of ndarray
        Parameters, updated in place by :meth:`step`.
    learning_rate_init : float
    lr_schedule : {'constant', 'invscaling', 'adaptive'}
        ``'invscaling'`` sets ``lr = learning_rate_init / (t + 1) ** power_t``
        after each epoch, ``t`` being the number of samples seen;
        ``'adaptive'`` divides the rate by 5 each time the loss stalls.
    momentum : float
    nesterov : bool
    power_t : float
    """

    def __init__(
        self,
        params,
        learning_rate_init=0.1,
        lr_schedule="constant",
        momentum=0.9,
        nesterov=True,
        power_t=0.5,
    ):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        # v, or momentum * v with Nesterov momentum (see the class docstring).
        self.velocities = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        """Update ``params`` in place; overwrites ``grads``."""
        lr, mu = self.learning_rate, self.momentum
        for p, g, v in zip(params, grads, self.velocities):
            scaled = np.multiply(g, lr, out=g)
            if self.nesterov:
                v -= scaled  # v_new = (mu * v) - lr * g
                v *= mu  # mu * v_new: kept for the next step, and
                p += np.subtract(v, scaled, out=g)  # the step mu * v_new - lr * g
            else:
                v *= mu
                v -= scaled
                p += v

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = (
                float(self.learning_rate_init) / (time_step + 1) ** self.power_t
            )

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            return super().trigger_stopping(msg, verbose)
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.learning_rate:f}")
        return False


class Adam(_Optimizer):
    """Adam (Kingma and Ba, 2014) with the bias correction folded into the rate.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``, step ``-lr_t m / (sqrt(v) + eps)``.
    """

    def __init__(
        self, params, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8
    ):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.t = 0
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]
        self._scratch = [np.empty_like(p) for p in params]

    def step(self, params, grads):
        """Update ``params`` in place; overwrites ``grads``."""
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.learning_rate = (
            self.learning_rate_init * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        )
        # A Python float keeps float32 parameters in float32 arithmetic.
        neg_lr = -float(self.learning_rate)
        for p, g, m, v, a in zip(params, grads, self.ms, self.vs, self._scratch):
            sq = np.multiply(g, g, out=a)
            m *= b1
            m += np.multiply(g, 1 - b1, out=g)
            sq *= 1 - b2
            v *= b2
            v += sq
            denom = np.sqrt(v, out=a)
            denom += self.epsilon
            update = np.multiply(m, neg_lr, out=g)
            update /= denom
            p += update


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
