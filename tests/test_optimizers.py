"""Stochastic optimizers (``skbatchnet._optimizers``) against the textbook steps.

The references below are written from the formulas, not from the code:

- SGD with momentum ``mu``: ``v <- mu v - lr g``; the step is ``v`` (heavy
  ball) or ``mu v_new - lr g`` (Nesterov); ``mu = 0`` is plain ``-lr g``;
- Adam: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``, step ``-lr_t m / (sqrt(v) + eps)``.

The optimizers take the gradient already multiplied by ``gradient_scale`` and
may overwrite it, so each step gets a fresh scaled copy. They rearrange the
same formulas (the stored state and the constants differ), so the
trajectories agree to rounding, not bitwise.
"""

import inspect
import math

import numpy as np
import pytest

from skbatchnet._optimizers import LBFGS, SGD, SOLVERS, STOCHASTIC_SOLVERS, Adam

SHAPES = [(4, 3), (3,), (3, 2), (2,)]
N_STEPS = 6
RTOL = 1e-12


def _params(seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    return [rng.randn(*s).astype(dtype) for s in SHAPES]


def _gradients(n_steps=N_STEPS, seed=1):
    rng = np.random.RandomState(seed)
    return [[rng.randn(*s) for s in SHAPES] for _ in range(n_steps)]


def _run(opt, params, gradients):
    """Steps ``opt`` through ``gradients``; the parameters after each step."""
    trajectory = []
    for grads in gradients:
        scaled = [opt.gradient_scale * g for g in grads]  # consumed by step
        opt.step(params, scaled)
        trajectory.append([p.copy() for p in params])
    return trajectory


def _sgd_reference(params, gradients, lr, mu, nesterov):
    params = [p.copy() for p in params]
    v = [np.zeros_like(p) for p in params]
    trajectory = []
    for grads in gradients:
        for i, g in enumerate(grads):
            v[i] = mu * v[i] - lr * g
            if nesterov:
                params[i] = params[i] + (mu * v[i] - lr * g)
            else:
                params[i] = params[i] + v[i]
        trajectory.append([p.copy() for p in params])
    return trajectory


def _adam_reference(params, gradients, lr, b1, b2, eps):
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    trajectory = []
    for t, grads in enumerate(gradients, start=1):
        lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            params[i] = params[i] - lr_t * m[i] / (np.sqrt(v[i]) + eps)
        trajectory.append([p.copy() for p in params])
    return trajectory


def _assert_same_trajectory(actual, expected, rtol=RTOL):
    assert len(actual) == len(expected)
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        for i, (u, w) in enumerate(zip(a, e)):
            np.testing.assert_allclose(
                u, w, rtol=rtol, atol=rtol, err_msg=f"step {step}, parameter {i}"
            )


def test_registry():
    assert SOLVERS == {"sgd": SGD, "adam": Adam, "lbfgs": LBFGS}
    assert STOCHASTIC_SOLVERS == ("sgd", "adam")


def test_from_params_reads_the_estimator_parameters():
    from skbatchnet import BatchMLPRegressor

    params = BatchMLPRegressor(
        learning_rate_init=0.3, momentum=0.5, nesterovs_momentum=False, beta_2=0.9
    ).get_params()
    p = np.zeros(3)
    sgd = SOLVERS["sgd"].from_params(params, p)
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov) == (0.3, 0.5, False)
    assert sgd.velocities[0].shape == (3,)
    adam = SOLVERS["adam"].from_params(params, p)
    assert (adam.learning_rate, adam.beta_2) == (0.3, 0.9)
    lbfgs = SOLVERS["lbfgs"].from_params(params)
    assert (lbfgs.max_iter, lbfgs.max_fun, lbfgs.tol) == (200, 15000, 1e-4)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_without_momentum_is_plain_gradient_descent(nesterov):
    lr = 0.05
    params, gradients = _params(), _gradients()
    start = [p.copy() for p in params]
    opt = SGD(params, learning_rate_init=lr, momentum=0.0, nesterov=nesterov)
    assert opt.gradient_scale == lr
    trajectory = _run(opt, params, gradients)
    expected = [p - lr * sum(g[i] for g in gradients) for i, p in enumerate(start)]
    _assert_same_trajectory(trajectory[-1:], [expected])


@pytest.mark.parametrize("mu", [0.5, 0.9])
@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
def test_sgd_momentum_follows_the_textbook_steps(nesterov, mu):
    lr = 0.03
    params, gradients = _params(), _gradients()
    expected = _sgd_reference(params, gradients, lr, mu, nesterov)
    opt = SGD(params, learning_rate_init=lr, momentum=mu, nesterov=nesterov)
    _assert_same_trajectory(_run(opt, params, gradients), expected)
    # the two kinds of momentum are told apart by these steps
    other = _sgd_reference(_params(), gradients, lr, mu, not nesterov)
    assert not np.allclose(params[0], other[-1][0], rtol=1e-6)


def test_sgd_updates_the_given_arrays_in_place():
    params = _params()
    ids = [id(p) for p in params]
    opt = SGD(params, learning_rate_init=0.1, momentum=0.9, nesterov=True)
    _run(opt, params, _gradients(n_steps=2))
    assert [id(p) for p in params] == ids
    assert not np.array_equal(params[0], _params()[0])


@pytest.mark.parametrize(
    "lr, b1, b2, eps",
    [
        (0.001, 0.9, 0.999, 1e-8),  # the defaults
        (0.01, 0.8, 0.95, 1e-8),  # swapped or misplaced betas show
        (0.05, 0.7, 0.9, 0.3),  # eps added to sqrt(v), not under the root
    ],
)
def test_adam_follows_the_textbook_steps(lr, b1, b2, eps):
    params, gradients = _params(), _gradients()
    expected = _adam_reference(params, gradients, lr, b1, b2, eps)
    opt = Adam(params, learning_rate_init=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    assert opt.gradient_scale == pytest.approx(1 - b1, rel=1e-15)
    _assert_same_trajectory(_run(opt, params, gradients), expected)
    assert opt.t == N_STEPS
    lr_t = lr * math.sqrt(1 - b2**N_STEPS) / (1 - b1**N_STEPS)
    assert opt.learning_rate == pytest.approx(lr_t, rel=1e-15)


def test_adam_without_bias_correction_would_differ():
    # The reference is sensitive to the bias correction: dropping it changes
    # the first steps far beyond the tolerance, so the test above can fail.
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
    params, gradients = _params(), _gradients(n_steps=1)
    corrected = _adam_reference(params, gradients, lr, b1, b2, eps)[0][0]
    g = gradients[0][0]
    uncorrected = params[0] - lr * (1 - b1) * g / (np.sqrt((1 - b2) * g**2) + eps)
    assert not np.allclose(corrected, uncorrected, rtol=1e-3)


@pytest.mark.parametrize(
    "make, reference",
    [
        (
            lambda p: SGD(p, learning_rate_init=0.03, momentum=0.9, nesterov=True),
            lambda p, g: _sgd_reference(p, g, lr=0.03, mu=0.9, nesterov=True),
        ),
        (
            lambda p: Adam(p, learning_rate_init=0.01),
            lambda p, g: _adam_reference(p, g, lr=0.01, b1=0.9, b2=0.999, eps=1e-8),
        ),
    ],
    ids=["sgd", "adam"],
)
def test_float32_parameters_stay_float32(make, reference):
    gradients = _gradients()
    params32 = _params(dtype=np.float32)
    expected = reference([p.astype(np.float64) for p in params32], gradients)
    opt = make(params32)
    trajectory = []
    for grads in gradients:
        scaled = [(opt.gradient_scale * g).astype(np.float32) for g in grads]
        opt.step(params32, scaled)
        trajectory.append([p.copy() for p in params32])
    assert {p.dtype for p in params32} == {np.dtype(np.float32)}
    _assert_same_trajectory(trajectory, expected, rtol=1e-5)


def test_invscaling_schedule_sets_the_rate_after_each_epoch():
    lr0, power_t = 0.2, 0.25
    params, gradients = _params(), _gradients(n_steps=2)
    opt = SGD(
        params,
        learning_rate_init=lr0,
        lr_schedule="invscaling",
        momentum=0.0,
        power_t=power_t,
    )
    start = [p.copy() for p in params]
    _run(opt, params, gradients[:1])  # the first epoch runs at lr0
    opt.iteration_ends(40)  # 40 samples seen
    lr1 = lr0 / 41**power_t
    assert opt.learning_rate == pytest.approx(lr1, rel=1e-15)
    assert opt.gradient_scale == opt.learning_rate
    _run(opt, params, gradients[1:])
    expected = [
        p - lr0 * g0 - lr1 * g1 for p, g0, g1 in zip(start, gradients[0], gradients[1])
    ]
    _assert_same_trajectory([params], [expected])
    opt.iteration_ends(80)
    assert opt.learning_rate == pytest.approx(lr0 / 81**power_t, rel=1e-15)
    assert opt.trigger_stopping("stalled.", verbose=False) is True


@pytest.mark.parametrize("schedule", ["constant", "adaptive"])
def test_other_schedules_keep_the_rate_at_epoch_ends(schedule):
    opt = SGD(_params(), learning_rate_init=0.2, lr_schedule=schedule)
    opt.iteration_ends(1000)
    assert opt.learning_rate == 0.2


def test_adaptive_schedule_divides_the_rate_by_five_until_it_is_tiny(capsys):
    opt = SGD(_params(), learning_rate_init=0.1, lr_schedule="adaptive")
    rates = []
    while not opt.trigger_stopping("Loss stalled.", verbose=True):
        rates.append(opt.learning_rate)
        assert opt.gradient_scale == opt.learning_rate
    # 0.1 / 5^k for k = 1..7; 0.1 / 5^7 = 1.28e-6 > 1e-6 is the last one
    # divided, and at 0.1 / 5^8 = 2.56e-7 <= 1e-6 training stops.
    np.testing.assert_allclose(rates, [0.1 / 5**k for k in range(1, 9)], rtol=1e-14)
    out = capsys.readouterr().out
    assert out.count("Setting learning rate to") == 8
    assert "Learning rate too small. Stopping." in out


def test_constant_schedule_and_adam_stop_when_the_loss_stalls(capsys):
    assert SGD(_params()).trigger_stopping("Loss stalled.", verbose=True) is True
    assert Adam(_params()).trigger_stopping("Loss stalled.", verbose=False) is True
    assert "Loss stalled. Stopping." in capsys.readouterr().out
    adam = Adam(_params(), learning_rate_init=0.01)
    adam.iteration_ends(1000)  # no schedule
    assert adam.learning_rate == 0.01


# -- defaults, the stopping boundary and the L-BFGS driver (mutation testing) --


@pytest.mark.parametrize(
    "ours, theirs", [(SGD, "SGDOptimizer"), (Adam, "AdamOptimizer")]
)
def test_defaults_are_scikit_learns(ours, theirs):
    # The oracle is scikit-learn's optimizers built with their defaults;
    # skbatchnet spells 'nesterovs_momentum' as 'nesterov'.
    from sklearn.neural_network import _stochastic_optimizers

    reference = getattr(_stochastic_optimizers, theirs)(_params())
    opt = ours(_params())
    names = [
        name
        for name in inspect.signature(type(reference)).parameters
        if name != "params"
    ]
    assert names
    for name in names:
        mine = "nesterov" if name == "nesterovs_momentum" else name
        theirs_value = getattr(reference, name)
        assert getattr(opt, mine) == theirs_value, name
        assert type(getattr(opt, mine)) is type(theirs_value), name


@pytest.mark.parametrize("rate", [2e-6, 1e-6, 5e-7])
def test_adaptive_stop_boundary_is_scikit_learns(rate, capsys):
    # At exactly 1e-6 scikit-learn stops; the messages are the same too.
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

    ours = SGD(_params(), lr_schedule="adaptive")
    theirs = SGDOptimizer(_params(), lr_schedule="adaptive")
    ours.learning_rate = theirs.learning_rate = rate
    stop = ours.trigger_stopping("Stalled.", verbose=True)
    out = capsys.readouterr().out
    assert stop == theirs.trigger_stopping("Stalled.", verbose=True)
    assert out == capsys.readouterr().out
    assert ours.learning_rate == theirs.learning_rate


def _rosenbrock(x):
    """Value and gradient of the n-dimensional Rosenbrock function."""
    a, b = x[:-1], x[1:]
    value = np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2)
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    grad[1:] += 200.0 * (b - a**2)
    return value, grad


def test_lbfgs_driver_converges_and_reports_each_iteration():
    seen = []
    result = LBFGS(max_iter=1000, max_fun=15000, tol=1e-10).minimize(
        _rosenbrock, np.zeros(6), callback=lambda x: seen.append(x.copy())
    )
    assert result.success
    np.testing.assert_allclose(result.x, np.ones(6), rtol=1e-5)
    assert len(seen) == result.nit > 10


def test_lbfgs_driver_respects_max_iter_max_fun_and_tol():
    def counted(x):
        counted.calls += 1
        return _rosenbrock(x)

    counted.calls = 0
    x0 = np.zeros(6)
    assert LBFGS(max_iter=3, max_fun=15000, tol=0.0).minimize(_rosenbrock, x0).nit == 3
    result = LBFGS(max_iter=1000, max_fun=5, tol=0.0).minimize(counted, x0)
    # scipy checks the budget between line searches, so it may overshoot a
    # little; without the budget the run needs far more evaluations.
    assert counted.calls == result.nfev < 30
    loose = LBFGS(max_iter=1000, max_fun=15000, tol=1.0).minimize(_rosenbrock, x0)
    tight = LBFGS(max_iter=1000, max_fun=15000, tol=1e-10).minimize(_rosenbrock, x0)
    assert np.abs(loose.jac).max() < 1.0
    assert loose.nit < tight.nit


def test_adam_advances_by_the_steps_the_loop_took_and_not_for_none():
    # The compiled loop reports how many steps an epoch took; an epoch whose
    # batches all lacked weight took none, even before Adam's first step.
    adam = Adam([np.zeros(3)], learning_rate_init=0.01, beta_1=0.8, beta_2=0.99)
    adam.advance(0)
    assert (adam.t, adam.learning_rate) == (0, 0.01)
    adam.advance(3)
    assert adam.t == 3
    assert adam.learning_rate == pytest.approx(
        0.01 * math.sqrt(1 - 0.99**3) / (1 - 0.8**3), rel=1e-15
    )
