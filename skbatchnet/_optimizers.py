"""Optimizers: they see parameters and gradients, nothing else.

The solvers are registered by name in :data:`SOLVERS`, the one place their
names are spelled. The stochastic updates are scikit-learn's formulas, so the
same seed gives the same trajectory, written in place with buffers allocated
once.

Each stochastic update starts by scaling the gradient by a constant (SGD by
the learning rate, Adam by ``1 - beta_1``); ``gradient_scale`` says by what,
and ``step`` takes the gradient already scaled. The caller folds the factor
into the reduction coefficients, where it costs a handful of multiplications
instead of a pass over every parameter. Products rounded in another order
differ from scikit-learn's by about an ulp per step.

``step(params, scaled_grads)`` consumes ``scaled_grads``: the buffers serve as
scratch space once read, so the optimizer needs one buffer fewer.
"""

import math
import sys
from decimal import Decimal

import numpy as np
import scipy.optimize

from ._codes import SolverCode

# The smallest positive float (subnormal): a rate below it is 0.
_TINIEST = sys.float_info.min * sys.float_info.epsilon


def invscaling_rate(learning_rate_init, time_step, power_t):
    """``learning_rate_init / (time_step + 1) ** power_t``, without overflow.

    scikit-learn's formula, computed as it computes it while the power is a
    float; past the float range (``power_t`` in the hundreds, or a long run)
    the quotient is computed through logarithms instead of raising
    OverflowError: it is then below ``learning_rate_init / 1.8e308``, and 0
    once below the smallest float. ``power_t`` is taken as a float, so an
    int exponent never builds a huge exact integer.
    """
    power_t = min(power_t, sys.float_info.max)  # an int beyond it rounds to it
    try:
        return float(learning_rate_init) / float(time_step + 1) ** float(power_t)
    except OverflowError:  # the power is beyond the float range
        log_rate = math.log(learning_rate_init) - power_t * math.log(time_step + 1)
        return math.exp(log_rate)  # underflows to 0.0, never overflows


class _Optimizer:
    stochastic = True
    # The compiled loop's update for this solver (_kernels.pxd); None trains
    # on the numpy path only.
    code = None
    # The estimator parameters the constructor takes after the parameter list,
    # in its order.
    estimator_params = ()
    # The factor a batch-size schedule's rate rule puts on the learning rate
    # for the epoch under way (skbatchnet.schedules.learning_rate_factor);
    # the rate's own schedule ('invscaling', 'adaptive') runs beneath it.
    rate_factor = 1.0

    @classmethod
    def from_params(cls, params, parameters):
        """The optimizer an estimator's ``get_params()`` describes."""
        return cls([parameters], *(params[name] for name in cls.estimator_params))

    @property
    def gradient_scale(self):
        """The factor :meth:`step` expects its gradients to be multiplied by."""
        return 1.0

    def advance(self, steps):
        """Count ``steps`` steps taken by the compiled loop."""

    def loop_state(self):
        """The compiled loop's view of this solver: ``OptimizerState``'s
        keyword arguments, whose arrays it updates in place."""
        raise NotImplementedError

    def iteration_ends(self, time_step):
        """Called after each epoch with the number of samples seen so far."""

    def check_schedule(self, time_step):
        """Raise if the schedule is useless by ``time_step`` samples seen.

        Called before training, with the samples seen at the end of its
        first epoch; the schedules without a rate that can vanish accept any.
        """

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
    over the parameters and a buffer.

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

    code = SolverCode.SGD
    estimator_params = (
        "learning_rate_init",
        "learning_rate",
        "momentum",
        "nesterovs_momentum",
        "power_t",
    )

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

    @property
    def gradient_scale(self):
        return self.learning_rate * self.rate_factor

    def loop_state(self):
        return dict(
            learning_rate=self.learning_rate * self.rate_factor,
            velocity=self.velocities[0],
            momentum=self.momentum,
            nesterov=self.nesterov,
        )

    def step(self, params, scaled_grads):
        """Update ``params`` in place given ``lr * g``; overwrites it."""
        mu = self.momentum
        for p, scaled, v in zip(params, scaled_grads, self.velocities):
            if self.nesterov:
                v -= scaled  # v_new = (mu * v) - lr * g
                v *= mu  # mu * v_new: kept for the next step, and
                p += np.subtract(v, scaled, out=scaled)  # the step mu * v_new - lr * g
            else:
                v *= mu
                v -= scaled
                p += v

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = invscaling_rate(
                self.learning_rate_init, time_step, self.power_t
            )

    def check_schedule(self, time_step):
        """Refuse an ``'invscaling'`` rate that is 0 after the first epoch.

        A rate below the smallest float is 0: every step after the first
        epoch would leave the weights where they are (scikit-learn raises an
        OverflowError there once ``(t + 1) ** power_t`` overflows). Later in
        a run the rate may still reach 0; the stopping rule then ends it.
        """
        if self.lr_schedule != "invscaling":
            return
        lr, p = self.learning_rate_init, self.power_t
        if invscaling_rate(lr, time_step, p) > 0:
            return
        largest = (math.log(lr) - math.log(_TINIEST)) / math.log(time_step + 1)
        p = f"{p!r}" if len(repr(p)) <= 20 else f"{Decimal(p):.4g}"
        raise ValueError(
            f"learning_rate='invscaling' with power_t={p} divides the learning "
            f"rate by ({time_step} + 1) ** {p} after the first epoch, which "
            "leaves less than the smallest float: the rate would be 0 and "
            "training would stop moving the weights. Use a power_t below "
            f"{largest:.4g} (the default is 0.5), or another learning_rate."
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

    The step receives ``h = (1 - b1) g``, so ``m <- b1 m + h``, and the second
    moment is kept as ``u = v / k`` with ``k = (1 - b2) / (1 - b1)^2``, so
    ``u <- b2 u + h^2``. The step is then
    ``-(lr_t / sqrt(k)) m / (sqrt(u) + eps / sqrt(k))``: the same formulas
    with the constants moved, in 10 passes over the parameters instead of 12.
    """

    code = SolverCode.ADAM
    estimator_params = ("learning_rate_init", "beta_1", "beta_2", "epsilon")

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
        self.us = [np.zeros_like(p) for p in params]  # v / k

    def _k(self):
        return (1 - self.beta_2) / (1 - self.beta_1) ** 2

    @property
    def gradient_scale(self):
        return 1 - self.beta_1

    def loop_state(self):
        return dict(
            learning_rate=self.learning_rate_init * self.rate_factor,
            adam_m=self.ms[0],
            adam_u=self.us[0],
            t=self.t,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
        )

    def advance(self, steps):
        """Count ``steps`` more steps and set the rate of the last one.

        ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``: the compiled loop takes
        many steps per call and reports how many, so the rate is written
        here once for both paths (``adam_rate`` in ``_kernels.pxd`` is the
        loop's own per-step copy of the formula).
        """
        if not steps:  # an epoch without a step (every batch weightless)
            return
        self.t += steps
        b1, b2, t = self.beta_1, self.beta_2, self.t
        base = self.learning_rate_init * self.rate_factor
        rate = base * math.sqrt(1 - b2**t) / (1 - b1**t)
        self.learning_rate = rate

    def step(self, params, scaled_grads):
        """Update ``params`` in place given ``(1 - beta_1) * g``; overwrites it."""
        self.advance(1)
        b1, b2 = self.beta_1, self.beta_2
        root_k = math.sqrt(self._k())
        # Python floats keep float32 parameters in float32 arithmetic.
        neg_lr = -float(self.learning_rate / root_k)
        eps = float(self.epsilon / root_k)
        # Scratch space, not state: made on first use (the compiled loop needs
        # none), so that an optimizer holds only its moments until then.
        scratch = self.__dict__.setdefault(
            "_scratch", [np.empty_like(p) for p in params]
        )
        for p, h, m, u, a in zip(params, scaled_grads, self.ms, self.us, scratch):
            m *= b1
            m += h
            u *= b2
            u += np.multiply(h, h, out=a)
            denom = np.sqrt(u, out=a)
            denom += eps
            step = np.multiply(m, neg_lr, out=h)
            step /= denom
            p += step


class LBFGS:
    """The L-BFGS-B driver: scipy's quasi-Newton method on the whole-set objective.

    Parameters
    ----------
    max_iter : int
        Iterations at most.
    max_fun : int
        Evaluations of the objective at most.
    tol : float
        Stops when the projected gradient's largest entry is below ``tol``.
    """

    stochastic = False
    estimator_params = ("max_iter", "max_fun", "tol")

    def __init__(self, max_iter, max_fun, tol):
        self.max_iter = max_iter
        self.max_fun = max_fun
        self.tol = tol

    @classmethod
    def from_params(cls, params):
        """The driver an estimator's ``get_params()`` describes."""
        return cls(*(params[name] for name in cls.estimator_params))

    def minimize(self, fun, x0, callback=None):
        """Minimize ``fun(x) -> (value, gradient)`` from ``x0`` (float64).

        Returns scipy's ``OptimizeResult``.
        """
        return scipy.optimize.minimize(
            fun,
            x0,
            method="L-BFGS-B",
            jac=True,
            callback=callback,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
            },
        )


SOLVERS = {"sgd": SGD, "adam": Adam, "lbfgs": LBFGS}
STOCHASTIC_SOLVERS = tuple(
    name for name, solver in SOLVERS.items() if solver.stochastic
)
