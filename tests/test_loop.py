"""The compiled epoch (skbatchnet._loop) against the numpy specification.

The oracle is a plain Python epoch loop written here from the public pieces:
``Network.batch_gradient``, the optimizers' ``step``, ``WeightAverage.update``
and ``Minibatcher.bounds``. Both paths start from the same parameters and see
the same row orders; after up to three epochs their parameter vectors must
agree to rounding. The configurations form an all-pairs design over every
axis, built by a small greedy generator below.
"""

import _thread
import doctest
import itertools
import math
import platform
import sys
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from skbatchnet import _loop
from skbatchnet._averaging import WeightAverage
from skbatchnet._optimizers import SGD, Adam
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher

N_SAMPLES = 23
N_FEATURES = 4
HIDDEN = (6, 5)
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

AXES = {
    "activation": ["identity", "logistic", "tanh", "relu"],
    "loss": ["squared_error", "poisson", "binary_log_loss", "multilabel", "log_loss"],
    "solver": ["sgd", "heavy_ball", "nesterov", "adam"],
    "reduction": ["mean", "sum"],
    "sample_weight": [None, "with_zeros"],
    "dtype": [np.float64, np.float32],
    "drop_last": [False, True, "merge"],
    "average": [False, True, 10],
    "batch_size": [1, 5, 8],
    "chunk_rows": [64, 3],
    "alpha": [0.0, 0.1],
    # Every product through BLAS in one call, or in calls of a few
    # multiply-adds each, or every one through the loop's own code.
    "products": ["blas", "split", "own"],
    # CSR rows: a batch of one is written out dense, larger ones are read
    # entry by entry.
    "input": ["dense", "csr"],
}
PRODUCTS = {
    "blas": dict(tiny_product=0, gemv_limit=0, gemm_limit=0),
    "split": dict(tiny_product=0, gemv_limit=7, gemm_limit=40),
    "own": dict(tiny_product=10**9),
}


def all_pairs(axes):
    """A list of configurations in which every pair of axis values appears.

    Greedy: each new configuration starts from the first pair not yet
    covered and fills the other axes, one by one, with the value covering
    the most pairs still missing (ties to the first value listed).
    """
    names = list(axes)
    missing = {
        ((a, i), (b, j))
        for a, b in itertools.combinations(range(len(names)), 2)
        for i in range(len(axes[names[a]]))
        for j in range(len(axes[names[b]]))
    }
    configs = []
    while missing:
        (a, i), (b, j) = min(missing)
        chosen = {a: i, b: j}
        for axis in range(len(names)):
            if axis in chosen:
                continue

            def gain(value, axis=axis, chosen=chosen):
                return sum(
                    tuple(sorted(((axis, value), (other, v)))) in missing
                    for other, v in chosen.items()
                )

            chosen[axis] = max(range(len(axes[names[axis]])), key=gain)
        for a, b in itertools.combinations(sorted(chosen), 2):
            missing.discard(((a, chosen[a]), (b, chosen[b])))
        configs.append({names[k]: axes[names[k]][v] for k, v in chosen.items()})
    return configs


def test_all_pairs_covers_every_pair():
    configs = all_pairs(AXES)
    assert len(configs) < 60  # far fewer than the full product
    for a, b in itertools.combinations(AXES, 2):
        seen = {(c[a], c[b]) for c in configs}
        # Compare by repr: None, False and 0 must stay distinct values.
        expected = {(repr(x), repr(y)) for x in AXES[a] for y in AXES[b]}
        assert {(repr(x), repr(y)) for x, y in seen} == expected, (a, b)


def _problem(
    loss, dtype, sample_weight, seed=0, n=N_SAMPLES, n_features=N_FEATURES, csr=False
):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features).astype(dtype)
    if csr:
        # About 60% zeros, one row without any entry.
        X[X < 0.25] = 0
        X[n // 2] = 0
        X = sp.csr_matrix(X)
    if loss == "squared_error":
        Y = rng.randn(n, 2)
    elif loss == "poisson":
        Y = rng.poisson(1.5, (n, 2)).astype(float)
    elif loss == "binary_log_loss":
        Y = rng.randint(0, 2, (n, 1)).astype(float)
    elif loss == "multilabel":
        Y = rng.randint(0, 2, (n, 3)).astype(float)
    else:
        Y = np.eye(3)[rng.randint(0, 3, n)]
    sw = None
    if sample_weight == "with_zeros":
        sw = rng.uniform(0.2, 2.0, n)
        sw[rng.permutation(n)[: n // 3]] = 0.0
        sw = sw.astype(dtype)
    net_loss = "binary_log_loss" if loss == "multilabel" else loss
    return X, np.ascontiguousarray(Y, dtype=dtype), sw, net_loss


def _optimizer(solver, params, reduction):
    # 'sum' steps grow with the batch; its rate keeps every problem stable.
    lr = 0.05 if reduction == "mean" else 0.004
    if solver == "adam":
        return Adam(params, learning_rate_init=lr / 5, beta_1=0.8, beta_2=0.99)
    momentum = {"sgd": 0.0, "heavy_ball": 0.9, "nesterov": 0.9}[solver]
    return SGD(params, lr, "constant", momentum, solver == "nesterov")


def _reference_epoch(net, opt, averager, X, Y, sw, order, bounds, alpha, total, red):
    """The numpy specification of one epoch (as _base._run_epoch runs it)."""
    loss_sum = weight_sum = 0.0
    seen = 0
    for number, (start, stop) in enumerate(bounds, start=1):
        rows = order[start:stop]
        n = rows.size
        w = None if sw is None else sw[rows]
        weight = float(n) if w is None else float(w.sum())
        if weight == 0:
            seen += n
            continue
        loss, coef_grads, intercept_grads = net.batch_gradient(
            X[rows], Y[rows], w, alpha=alpha, total_weight=total, reduction=red
        )
        if not math.isfinite(loss):
            return "loss", number, loss_sum, weight_sum, seen
        gradient = np.concatenate([g.ravel() for g in coef_grads + intercept_grads])
        opt.step([net.parameters], [gradient * opt.gradient_scale])
        if averager is not None:
            averager.update(net.parameters, n)
        loss_sum += weight * loss
        weight_sum += weight
        seen += n
    if not np.isfinite(net.parameters).all():
        return "weights", len(bounds), loss_sum, weight_sum, seen
    return "ok", 0, loss_sum, weight_sum, seen


class _Compiled:
    """The state the compiled loop keeps between epochs, as stage 2 will."""

    def __init__(
        self,
        net,
        solver,
        opt,
        average,
        chunk_rows,
        products="blas",
        loop=_loop,
        csr=False,
    ):
        dtype = net.dtype
        self.loop = loop
        self.params = net.parameters.copy()
        self.units = net.layer_units
        self.activation = _loop.ACTIVATION_CODES[net.activation]
        self.loss = _loop.LOSS_CODES[net.loss]
        self.solver, self.opt = solver, opt
        self.velocity = np.zeros_like(self.params)
        self.m = np.zeros_like(self.params)
        self.u = np.zeros_like(self.params)
        self.t = 0
        self.mean = np.zeros_like(self.params) if average else None
        self.start = 1 if average is True else int(average)
        self.n_averaged = self.samples_seen = 0
        self.chunk_rows = chunk_rows
        self.products = PRODUCTS[products]
        self.work = loop.epoch_workspace(self.units, chunk_rows, dtype, sparse=csr)

    def epoch(self, X, Y, sw, order, bounds, alpha, total, reduction, **kwargs):
        opt = self.opt
        if self.solver == "adam":
            state = dict(
                solver=_loop.SOLVER_CODES["adam"],
                learning_rate=opt.learning_rate_init,
                adam_m=self.m,
                adam_u=self.u,
                adam_t=self.t,
                beta_1=opt.beta_1,
                beta_2=opt.beta_2,
                epsilon=opt.epsilon,
            )
        else:
            state = dict(
                solver=_loop.SOLVER_CODES["sgd"],
                learning_rate=opt.learning_rate,
                velocity=self.velocity,
                momentum=opt.momentum,
                nesterov=opt.nesterov,
            )
        result = self.loop.run_epoch(
            self.params,
            self.units,
            X,
            Y,
            sw,
            np.asarray(order, dtype=np.intp),
            np.asarray(bounds, dtype=np.intp).reshape(-1, 2),
            self.work,
            activation=self.activation,
            loss=self.loss,
            reduction=_loop.REDUCTION_CODES[reduction],
            alpha=alpha,
            total_weight=total,
            average_mean=self.mean,
            n_averaged=self.n_averaged,
            samples_seen=self.samples_seen,
            average_start=self.start,
            chunk_rows=self.chunk_rows,
            **self.products,
            **state,
            **kwargs,
        )
        self.t += result.steps
        self.n_averaged, self.samples_seen = result.n_averaged, result.samples_seen
        return result


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _config_id(config):
    return "-".join(getattr(v, "__name__", str(v)) for v in config.values())


@pytest.mark.parametrize("config", all_pairs(AXES), ids=_config_id)
def test_compiled_epochs_match_numpy(config):
    dtype = config["dtype"]
    csr = config["input"] == "csr"
    X, Y, sw, loss = _problem(config["loss"], dtype, config["sample_weight"], csr=csr)
    net = Network.initialize(
        [N_FEATURES, *HIDDEN, Y.shape[1]],
        activation=config["activation"],
        loss=loss,
        random_state=1,
        dtype=dtype,
    )
    initial = net.parameters.copy()
    opt = _optimizer(config["solver"], [net.parameters], config["reduction"])
    average = config["average"]
    averager = None
    if average:
        start = 1 if average is True else int(average)
        averager = WeightAverage(net.parameters.size, dtype, start)
    compiled = _Compiled(
        net,
        config["solver"],
        _optimizer(config["solver"], [net.parameters], config["reduction"]),
        average,
        config["chunk_rows"],
        config["products"],
        csr=csr,
    )
    batcher = Minibatcher(config["batch_size"], drop_last=config["drop_last"])
    bounds = batcher.bounds(N_SAMPLES)
    total = N_SAMPLES if sw is None else float(sw.sum())
    alpha, reduction = config["alpha"], config["reduction"]
    rng = np.random.RandomState(2)
    rtol = RTOL[dtype]
    for _ in range(3):
        order = rng.permutation(N_SAMPLES)
        expected = _reference_epoch(
            net, opt, averager, X, Y, sw, order, bounds, alpha, total, reduction
        )
        result = compiled.epoch(X, Y, sw, order, bounds, alpha, total, reduction)
        assert expected[0] == "ok"
        assert result.status == _loop.OK
        assert result.seen == expected[4]
        assert result.weight_sum == pytest.approx(expected[3], rel=rtol)
        assert result.loss_sum == pytest.approx(expected[2], rel=10 * rtol)
        assert _relative(compiled.params, net.parameters) < rtol
    # The reference moved, so a kernel that did nothing could not pass.
    assert _relative(net.parameters, initial) > 1e-3
    if config["solver"] == "adam":
        assert compiled.t == opt.t
        assert _relative(compiled.m, opt.ms[0]) < rtol
        assert _relative(compiled.u, opt.us[0]) < 10 * rtol
    else:
        assert _relative(compiled.velocity, opt.velocities[0]) < rtol
    if averager is not None:
        assert compiled.n_averaged == averager.n_averaged
        assert compiled.samples_seen == averager.samples_seen
        if averager.n_averaged:
            assert _relative(compiled.mean, averager.mean) < rtol


def _avx2_twin():
    """skbatchnet._loop_avx2 where it is built and this CPU runs it, else None."""
    if not _loop.cpu_has_avx2():
        return None
    try:
        from skbatchnet import _loop_avx2
    except ImportError:
        return None
    return _loop_avx2


def test_the_avx2_twin_is_built_and_chosen_on_x86_64_linux():
    # Without this, a build that lost the twin would skip the test below.
    import skbatchnet._compiled

    twin = _avx2_twin()
    if platform.machine() == "x86_64" and sys.platform == "linux":
        from skbatchnet import _loop_avx2  # noqa: F401  built on every CPU

        if _loop.cpu_has_avx2():
            assert twin is not None
    expected = _loop if twin is None else twin
    assert skbatchnet._compiled._loop is expected


@pytest.mark.skipif(_avx2_twin() is None, reason="no AVX2 build or CPU")
@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("config", all_pairs(AXES), ids=_config_id)
def test_the_avx2_twin_computes_the_same_bits(config, wide):
    # Same source, vectors twice as wide and no fused multiply-add: every
    # operation rounds as in the portable build. The wide network has rows
    # of several vectors plus a remainder, in every layer.
    dtype = config["dtype"]
    n, n_features, hidden = (61, 37, (33, 19)) if wide else (23, 4, HIDDEN)
    csr = config["input"] == "csr"
    X, Y, sw, loss = _problem(
        config["loss"],
        dtype,
        config["sample_weight"],
        n=n,
        n_features=n_features,
        csr=csr,
    )
    net = Network.initialize(
        [n_features, *hidden, Y.shape[1]],
        activation=config["activation"],
        loss=loss,
        random_state=1,
        dtype=dtype,
    )
    runs = [
        _Compiled(
            net,
            config["solver"],
            _optimizer(config["solver"], [net.parameters], config["reduction"]),
            config["average"],
            config["chunk_rows"],
            config["products"],
            loop=loop,
            csr=csr,
        )
        for loop in (_loop, _avx2_twin())
    ]
    bounds = Minibatcher(config["batch_size"], drop_last=config["drop_last"]).bounds(n)
    total = n if sw is None else float(sw.sum())
    rng = np.random.RandomState(2)
    for _ in range(3):
        order = rng.permutation(n)
        portable, twin = (
            run.epoch(
                X, Y, sw, order, bounds, config["alpha"], total, config["reduction"]
            )
            for run in runs
        )
        assert twin == portable  # statuses, loss sums and counters
        for name in ("params", "velocity", "m", "u", "mean"):
            a, b = getattr(runs[0], name), getattr(runs[1], name)
            assert (a is None and b is None) or np.array_equal(a, b), name
    assert not np.array_equal(runs[0].params, net.parameters)  # it trained


def _setup(loss="squared_error", solver="sgd", dtype=np.float64, sw=None, lr=None):
    X, Y, _, net_loss = _problem(loss, dtype, None)
    net = Network.initialize(
        [N_FEATURES, *HIDDEN, Y.shape[1]],
        activation="identity",  # unbounded, so that a large rate diverges
        loss=net_loss,
        random_state=1,
        dtype=dtype,
    )
    opt, twin = (_optimizer(solver, [net.parameters], "mean") for _ in range(2))
    if lr is not None:
        opt.learning_rate = twin.learning_rate = lr
    compiled = _Compiled(net, solver, twin, False, 64)
    return X, Y, net, opt, compiled


def test_non_finite_loss_stops_before_the_step_of_that_batch():
    X, Y, net, opt, compiled = _setup(lr=40.0)
    Y *= 1e3
    order = np.arange(N_SAMPLES)
    bounds = Minibatcher(1).bounds(N_SAMPLES)
    with np.errstate(all="ignore"):
        expected = _reference_epoch(
            net, opt, None, X, Y, None, order, bounds, 0.0, N_SAMPLES, "mean"
        )
        result = compiled.epoch(X, Y, None, order, bounds, 0.0, N_SAMPLES, "mean")
    status, batch = expected[:2]
    assert status == "loss" and 1 < batch < N_SAMPLES  # diverged mid-epoch
    assert result.status == _loop.NONFINITE_LOSS
    assert result.batch == batch
    assert result.steps == batch - 1 and result.seen == batch - 1
    assert np.isfinite(compiled.params).all()
    assert _relative(compiled.params, net.parameters) < 1e-12


def test_non_finite_weights_after_the_last_step():
    # One batch, a rate past the float range: the step itself overflows.
    X, Y, net, opt, compiled = _setup(lr=1e308)
    Y *= 1e3
    order = np.arange(N_SAMPLES)
    bounds = [(0, N_SAMPLES)]
    with np.errstate(all="ignore"):
        expected = _reference_epoch(
            net, opt, None, X, Y, None, order, bounds, 0.0, N_SAMPLES, "mean"
        )
        result = compiled.epoch(X, Y, None, order, bounds, 0.0, N_SAMPLES, "mean")
    assert expected[:2] == ("weights", 1)
    assert (result.status, result.batch, result.steps) == (
        _loop.NONFINITE_WEIGHTS,
        1,
        1,
    )


def test_zero_weight_batches_are_skipped_and_their_rows_counted():
    X, Y, net, opt, compiled = _setup(solver="adam")
    sw = np.ones(N_SAMPLES)
    sw[5:10] = 0.0  # the whole second batch of 5
    sw[13] = 0.0  # and one row of the third
    order = np.arange(N_SAMPLES)
    bounds = Minibatcher(5).bounds(N_SAMPLES)
    expected = _reference_epoch(
        net, opt, None, X, Y, sw, order, bounds, 0.1, sw.sum(), "mean"
    )
    result = compiled.epoch(X, Y, sw, order, bounds, 0.1, sw.sum(), "mean")
    assert expected[0] == "ok" and opt.t == len(bounds) - 1
    # Adam would move the weights even on a zero gradient: a skipped batch
    # takes no step at all.
    assert result.steps == compiled.t == len(bounds) - 1
    assert result.seen == N_SAMPLES
    assert result.weight_sum == sw.sum()
    assert result.loss_sum == pytest.approx(expected[2], rel=1e-12)
    assert _relative(compiled.params, net.parameters) < 1e-12


def test_ctrl_c_ends_the_epoch_with_the_interrupted_status():
    X, Y, net, opt, compiled = _setup()
    order = np.tile(np.arange(N_SAMPLES), 200_000)  # millions of steps
    bounds = np.stack([np.arange(order.size), np.arange(1, order.size + 1)], 1)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    try:
        result = compiled.epoch(
            X, Y, None, order, bounds, 0.0, N_SAMPLES, "mean", check_steps=64
        )
    finally:
        timer.cancel()
    assert result.status == _loop.INTERRUPTED
    assert 0 < result.steps < order.size


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(params=np.zeros(3)), "params has 3 values"),
        (dict(workspace=np.zeros(3)), "make it with epoch_workspace"),
        (dict(bounds=np.array([[0, 99]])), "bounds\\[0\\]"),
        (dict(order=np.full(N_SAMPLES, 99)), "order\\[0\\] = 99"),
        (dict(velocity=None), "needs velocity"),
        (dict(loss=7), "loss must be a code"),
    ],
)
def test_bad_arguments_are_named(change, match):
    X, Y, net, opt, compiled = _setup()
    kwargs = dict(
        params=compiled.params,
        layer_units=compiled.units,
        X=X,
        Y=Y,
        sample_weight=None,
        order=np.arange(N_SAMPLES),
        bounds=np.array([[0, N_SAMPLES]]),
        workspace=compiled.work,
        activation=0,
        loss=0,
        reduction=0,
        alpha=0.0,
        total_weight=float(N_SAMPLES),
        solver=0,
        learning_rate=0.1,
        velocity=compiled.velocity,
        chunk_rows=64,
    )
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        _loop.run_epoch(**kwargs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transposed", [False, True], ids=["W", "W.T"])
@pytest.mark.parametrize(
    "n, k, m",
    [(1, 3, 4), (1, 130, 150), (5, 7, 2), (63, 90, 100), (2, 0, 3)],
)
def test_one_thread_product_is_the_matrix_product(n, k, m, transposed, dtype):
    # (1, 130, 150) and (63, 90, 100) exceed one call's limit, so BLAS gets
    # them in blocks of columns; (1, 3, 4) is small enough for the loop's
    # own code.
    rng = np.random.RandomState(0)
    A = rng.randn(n, k).astype(dtype)
    W = rng.randn(m, k).astype(dtype).T if transposed else rng.randn(k, m)
    W = W.astype(dtype, copy=False)
    out = np.full((n, m), np.nan, dtype)
    assert _loop.one_thread_product(A, W, out) is not None
    expected = A.astype(np.float64) @ W.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_one_thread_product_names_what_does_not_fit():
    A, W = np.ones((2, 3)), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"A \(2, 3\), W \(4, 5\)"):
        _loop.one_thread_product(A, W, np.empty((2, 5)))
    with pytest.raises(ValueError, match="C- or F-contiguous"):
        _loop.one_thread_product(A, np.ones((3, 10))[:, ::2], np.empty((2, 5)))


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000])
def test_squared_norm_is_the_sum_of_squares(size):
    w = np.random.RandomState(size).randn(size)
    assert _loop.squared_norm(w) == pytest.approx(math.fsum(w * w), rel=1e-14)
    assert _loop.squared_norm(w.astype(np.float32)) == pytest.approx(
        math.fsum(w.astype(np.float32).astype(np.float64) ** 2), rel=1e-12
    )


@pytest.mark.parametrize(
    "name", ["epoch_workspace", "run_epoch", "one_thread_product", "squared_norm"]
)
def test_docstring_examples_run(name):
    # doctest.testmod does not see functions compiled by Cython.
    test = doctest.DocTestParser().get_doctest(
        getattr(_loop, name).__doc__, dict(vars(_loop)), name, None, 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.failures == 0
