"""The compiled epoch (skbatchnet._epoch) against the numpy specification.

The oracle is the specification itself, :func:`skbatchnet._training.run_epoch`,
and the compiled loop is driven through the runner training uses,
:class:`skbatchnet._compiled.CompiledEpochs`. Both paths start from the same
parameters and see the same row orders; after up to three epochs their
parameter vectors, optimizer states and averages must agree to rounding. The
configurations form an all-pairs design over every axis, built by a small
greedy generator below.
"""

import _thread
import doctest
import itertools
import math
import platform
import signal
import sys
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import config_context

from skbatchnet import _epoch, _plan, _products
from skbatchnet._averaging import WeightAverage
from skbatchnet._codes import Status
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._optimizers import SGD, Adam
from skbatchnet._outcome import Diverged
from skbatchnet._training import Step, TrainingData, run_epoch
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
    "reduction": ["mean", "sum", "unbiased"],
    # Per-example clipping: off, clipping most rows, clipping some.
    "max_norm": [None, 0.05, 1.0],
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
    # The loop's threads, sharing every step (thread_work=0 below).
    "threads": [1, 3],
}
PRODUCTS = {
    "blas": dict(tiny_product=0, gemv_limit=0, gemm_limit=0),
    # Row blocks of two rows, tiles of a few multiply-adds, two tiles for
    # any product of 20 or more, the update in pieces of 7 parameters.
    "split": dict(
        tiny_product=0,
        gemv_limit=7,
        gemm_limit=40,
        block_rows=2,
        split_work=20,
        update_piece=7,
    ),
    "own": dict(tiny_product=10**9),
}
PORTABLE = (_epoch, _plan)


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


def _optimizer(solver, params, reduction, activation):
    # 'sum' steps grow with the batch, and identity units are unbounded; these
    # rates keep every problem stable.
    lr = 0.004 if reduction == "sum" else 0.05
    if activation == "identity":
        lr /= 5
    if solver == "adam":
        return Adam(params, learning_rate_init=lr / 5, beta_1=0.8, beta_2=0.99)
    momentum = {"sgd": 0.0, "heavy_ball": 0.9, "nesterov": 0.9}[solver]
    return SGD(params, lr, "constant", momentum, solver == "nesterov")


class _Path:
    """One fit's state on one path: a network, its optimizer and average."""

    def __init__(self, initial, config):
        self.net = Network(initial.coefs, initial.intercepts, **_options(initial))
        params = [self.net.parameters]
        self.optimizer = _optimizer(
            config["solver"], params, config["reduction"], config["activation"]
        )
        self.averager = None
        average = config["average"]
        if average:
            start = 1 if average is True else int(average)
            self.averager = WeightAverage(
                self.net.parameters.size, initial.dtype, start
            )

    def state(self):
        """Every array the epoch updates, by name."""
        opt, avg = self.optimizer, self.averager
        arrays = {"params": self.net.parameters}
        arrays.update(
            {"m": opt.ms[0], "u": opt.us[0]}
            if isinstance(opt, Adam)
            else {"velocity": opt.velocities[0]}
        )
        if avg is not None:
            arrays["mean"] = avg.mean
        return arrays


def _options(net):
    return dict(activation=net.activation, loss=net.loss)


def _runs(config, module=PORTABLE, n=N_SAMPLES, n_features=N_FEATURES, hidden=HIDDEN):
    """The numpy path and a compiled runner, from the same start, and what
    they share: ``(numpy, compiled, runner, data, batcher, step)``."""
    dtype = config["dtype"]
    csr = config["input"] == "csr"
    X, Y, sw, loss = _problem(
        config["loss"],
        dtype,
        config["sample_weight"],
        n=n,
        n_features=n_features,
        csr=csr,
    )
    initial = Network.initialize(
        [n_features, *hidden, Y.shape[1]],
        activation=config["activation"],
        loss=loss,
        random_state=1,
        dtype=dtype,
    )
    numpy_path, compiled = _Path(initial, config), _Path(initial, config)
    total = n if sw is None else float(sw.sum())
    data = TrainingData(X, Y, sw, total)
    batcher = Minibatcher(config["batch_size"], drop_last=config["drop_last"])
    step = Step(
        alpha=config["alpha"],
        reduction=config["reduction"],
        max_gradient_norm=config["max_norm"],
    )
    with _chunking(config, initial):
        runner = CompiledEpochs(
            compiled.net,
            data,
            batcher,
            step,
            thresholds={
                **PRODUCTS[config["products"]],
                "thread_work": 0,
                "choose_threads": False,
            },
            module=module,
            n_threads=config["threads"],
        )
    return numpy_path, compiled, runner, data, batcher, step


def _chunking(config, net):
    """Batches cut into chunks of ``config['chunk_rows']`` rows on both paths,
    through scikit-learn's working_memory, which both read."""
    row_bytes = net.dtype.itemsize * 2 * sum(net.layer_units[1:])
    return config_context(
        working_memory=(config["chunk_rows"] + 0.5) * row_bytes / 2**20
    )


def _numpy_epoch(path, data, batcher, step, order):
    n = data.n_samples
    return run_epoch(
        path.net,
        data,
        batcher.batches(order, n),
        path.optimizer,
        step=step,
        workspace=path.net.workspace(n),
        averager=path.averager,
    )


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _config_id(config):
    return "-".join(getattr(v, "__name__", str(v)) for v in config.values())


@pytest.mark.parametrize("config", all_pairs(AXES), ids=_config_id)
def test_compiled_epochs_match_numpy(config):
    numpy_path, compiled, runner, data, batcher, step = _runs(config)
    initial = numpy_path.net.parameters.copy()
    assert runner.plan.chunk_rows == min(
        config["chunk_rows"], max(e - s for s, e in batcher.bounds(N_SAMPLES))
    )
    rng = np.random.RandomState(2)
    rtol = RTOL[config["dtype"]]
    for _ in range(3):
        order = rng.permutation(N_SAMPLES)
        with _chunking(config, numpy_path.net):
            expected = _numpy_epoch(numpy_path, data, batcher, step, order)
            result = runner.run(order, compiled.optimizer, compiled.averager)
        assert result.seen == expected.seen and result.steps == expected.steps
        # A norm within rounding of C could be counted on one side only.
        assert abs(result.clipped - expected.clipped) <= (config["dtype"] == np.float32)
        assert result.weight_sum == pytest.approx(expected.weight_sum, rel=rtol)
        assert result.loss_sum == pytest.approx(expected.loss_sum, rel=10 * rtol)
        assert _relative(compiled.net.parameters, numpy_path.net.parameters) < rtol
    # The reference moved, so a kernel that did nothing could not pass.
    assert _relative(numpy_path.net.parameters, initial) > 1e-3
    opt, reference = compiled.optimizer, numpy_path.optimizer
    if config["solver"] == "adam":
        assert opt.t == reference.t
        assert opt.learning_rate == reference.learning_rate
        assert _relative(opt.ms[0], reference.ms[0]) < rtol
        assert _relative(opt.us[0], reference.us[0]) < 10 * rtol
    else:
        assert _relative(opt.velocities[0], reference.velocities[0]) < rtol
    averager, reference = compiled.averager, numpy_path.averager
    if reference is not None:
        assert averager.n_averaged == reference.n_averaged
        assert averager.samples_seen == reference.samples_seen
        if reference.n_averaged:
            assert _relative(averager.mean, reference.mean) < rtol


def _avx2_twin():
    """skbatchnet._epoch_avx2 where it is built and this CPU runs it, else None."""
    if not _epoch.cpu_has_avx2():
        return None
    try:
        from skbatchnet import _epoch_avx2
    except ImportError:
        return None
    return _epoch_avx2


def test_the_avx2_twin_is_built_and_chosen_on_x86_64_linux():
    # Without this, a build that lost the twin would skip the test below.
    import skbatchnet._extension

    twin = _avx2_twin()
    if platform.machine() == "x86_64" and sys.platform == "linux":
        from skbatchnet import _epoch_avx2  # noqa: F401  built on every CPU

        if _epoch.cpu_has_avx2():
            assert twin is not None
    portable = twin is None or skbatchnet._extension.FORCE_PORTABLE
    expected = _epoch if portable else twin
    assert skbatchnet._extension.epoch_module() == (expected, _plan)


@pytest.mark.skipif(_avx2_twin() is None, reason="no AVX2 build or CPU")
@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("config", all_pairs(AXES), ids=_config_id)
def test_the_avx2_twin_computes_the_same_bits(config, wide):
    # Same source, vectors twice as wide and no fused multiply-add: every
    # operation rounds as in the portable build. The wide network has rows
    # of several vectors plus a remainder, in every layer.
    n, n_features, hidden = (61, 37, (33, 19)) if wide else (23, 4, HIDDEN)
    shape = dict(n=n, n_features=n_features, hidden=hidden)
    _, portable, runner, *_ = _runs(config, PORTABLE, **shape)
    _, twin, twin_runner, *_ = _runs(config, (_avx2_twin(), _plan), **shape)
    initial = portable.net.parameters.copy()
    rng = np.random.RandomState(2)
    for _ in range(3):
        order = rng.permutation(n)
        outcomes = []
        for run, path in ((runner, portable), (twin_runner, twin)):
            try:
                outcomes.append(run.run(order, path.optimizer, path.averager))
            except Diverged as error:  # pragma: no cover - both must agree
                outcomes.append(("diverged", error.what, error.batch))
        assert outcomes[0] == outcomes[1]  # loss sums and counters
        a, b = portable.state(), twin.state()
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), name
    assert not np.array_equal(portable.net.parameters, initial)  # it trained


def _setup(solver="sgd", lr=None, batch_size=1, config=None):
    """A diverging-prone problem (identity units) on both paths."""
    config = {
        "loss": "squared_error",
        "dtype": np.float64,
        "sample_weight": None,
        "input": "dense",
        "activation": "identity",  # unbounded, so that a large rate diverges
        "solver": solver,
        "reduction": "mean",
        "max_norm": None,
        "average": False,
        "batch_size": batch_size,
        "drop_last": False,
        "alpha": 0.0,
        "products": "blas",
        "chunk_rows": 64,
        "threads": 1,
        **(config or {}),
    }
    numpy_path, compiled, runner, data, batcher, step = _runs(config)
    if lr is not None:
        numpy_path.optimizer.learning_rate = compiled.optimizer.learning_rate = lr
    return numpy_path, compiled, runner, data, batcher, step


def _both_diverge(numpy_path, compiled, runner, data, batcher, step):
    order = np.arange(data.n_samples)
    with np.errstate(all="ignore"):
        with pytest.raises(Diverged) as expected:
            _numpy_epoch(numpy_path, data, batcher, step, order)
        with pytest.raises(Diverged) as result:
            runner.run(order, compiled.optimizer, compiled.averager)
    return expected.value, result.value


def test_non_finite_loss_stops_before_the_step_of_that_batch():
    paths = _setup(lr=40.0)
    paths[3].Y[...] *= 1e3
    expected, result = _both_diverge(*paths)
    batch = expected.batch
    assert expected.what == "loss" and 1 < batch < N_SAMPLES  # mid-epoch
    assert result.what == "loss"
    assert result.batch == batch
    assert result.steps == batch - 1 and result.seen == batch - 1
    numpy_path, compiled = paths[:2]
    assert np.isfinite(compiled.net.parameters).all()
    assert _relative(compiled.net.parameters, numpy_path.net.parameters) < 1e-12


def test_non_finite_weights_after_the_last_step():
    # One batch, a rate past the float range: the step itself overflows.
    paths = _setup(lr=1e308, batch_size=N_SAMPLES)
    paths[3].Y[...] *= 1e3
    expected, result = _both_diverge(*paths)
    assert (expected.what, expected.batch) == ("weights", 1)
    assert (result.what, result.batch, result.steps) == ("weights", 1, 1)


def test_zero_weight_batches_are_skipped_and_their_rows_counted():
    numpy_path, compiled, runner, data, batcher, step = _setup(
        solver="adam", batch_size=5, config={"alpha": 0.1}
    )
    sw = np.ones(N_SAMPLES)
    sw[5:10] = 0.0  # the whole second batch of 5
    sw[13] = 0.0  # and one row of the third
    data = TrainingData(data.X, data.Y, sw, sw.sum())
    runner = CompiledEpochs(compiled.net, data, batcher, step)
    order = np.arange(N_SAMPLES)
    expected = _numpy_epoch(numpy_path, data, batcher, step, order)
    result = runner.run(order, compiled.optimizer, None)
    n_batches = len(batcher.bounds(N_SAMPLES))
    assert numpy_path.optimizer.t == n_batches - 1
    # Adam would move the weights even on a zero gradient: a skipped batch
    # takes no step at all.
    assert result.steps == compiled.optimizer.t == n_batches - 1
    assert result.seen == N_SAMPLES
    assert result.weight_sum == sw.sum()
    assert result.loss_sum == pytest.approx(expected.loss_sum, rel=1e-12)
    assert _relative(compiled.net.parameters, numpy_path.net.parameters) < 1e-12


class _WithEmptyBatches(Minibatcher):
    """Batches of 5 rows with an empty batch before each, as Poisson sampling
    may draw them."""

    def bounds(self, n_samples):
        out = []
        for start, stop in super().bounds(n_samples):
            out += [(start, start), (start, stop)]
        return out


@pytest.mark.parametrize("weighted", [False, True])
def test_empty_batches_take_no_step_on_either_path(weighted):
    config = {"sample_weight": "with_zeros" if weighted else None, "solver": "adam"}
    numpy_path, compiled, _, data, _, step = _setup(batch_size=5, config=config)
    batcher = _WithEmptyBatches(5)
    runner = CompiledEpochs(compiled.net, data, batcher, step)
    order = np.random.RandomState(0).permutation(N_SAMPLES)
    expected = _numpy_epoch(numpy_path, data, batcher, step, order)
    result = runner.run(order, compiled.optimizer, None)
    assert (result.seen, result.steps) == (expected.seen, expected.steps)
    assert result.weight_sum == pytest.approx(expected.weight_sum, rel=1e-12)
    assert result.loss_sum == pytest.approx(expected.loss_sum, rel=1e-12)
    assert result.seen == N_SAMPLES
    assert compiled.optimizer.t == numpy_path.optimizer.t == result.steps
    assert result.steps <= len(Minibatcher(5).bounds(N_SAMPLES))
    assert _relative(compiled.net.parameters, numpy_path.net.parameters) < 1e-12


def _low_level(n_samples=N_SAMPLES, **plan_changes):
    """A plan and an SGD state of the compiled tier itself, and their data."""
    X, Y, _, _ = _problem("squared_error", np.float64, None)
    net = Network.initialize([N_FEATURES, *HIDDEN, 2], random_state=1)
    kwargs = dict(
        layer_units=net.layer_units,
        X=X,
        Y=Y,
        sample_weight=None,
        bounds=np.array([[0, n_samples]]),
        activation=0,
        loss=0,
        reduction=0,
        alpha=0.0,
        total_weight=float(n_samples),
        chunk_rows=64,
    )
    kwargs.update(plan_changes)
    return kwargs, net


def test_a_plan_takes_batches_up_to_its_max_rows_in_any_epoch():
    # Room for batch sizes that change between epochs: a plan made for
    # batches of 5 rows and max_rows=10 runs an epoch of batches of 10.
    kwargs, net = _low_level(bounds=Minibatcher(5).bounds(N_SAMPLES), max_rows=10)
    plan = _plan.EpochPlan(**kwargs)
    assert (plan.max_rows, plan.chunk_rows) == (10, 10)
    state = _plan.OptimizerState(
        0, net.parameters, learning_rate=1e-3, velocity=np.zeros_like(net.parameters)
    )
    wide = Minibatcher(10).bounds(N_SAMPLES)
    result = _epoch.run_epoch(plan, state, None, None, wide)
    assert (result.status, result.steps, result.seen) == (Status.OK, 3, N_SAMPLES)
    with pytest.raises(ValueError, match="max_rows=3 is below the widest batch, 5"):
        _plan.EpochPlan(**{**kwargs, "max_rows": 3})


def test_ctrl_c_ends_the_epoch_with_the_interrupted_status():
    kwargs, net = _low_level(bounds=[[0, 1]], check_steps=64)
    plan = _plan.EpochPlan(**kwargs)
    state = _plan.OptimizerState(
        0, net.parameters, learning_rate=1e-3, velocity=np.zeros_like(net.parameters)
    )
    order = np.tile(np.arange(N_SAMPLES), 200_000)  # millions of steps
    bounds = np.stack([np.arange(order.size), np.arange(1, order.size + 1)], 1)
    before, stop = net.parameters.copy(), threading.Event()

    def interrupt_once_stepping():
        # Not before the loop runs: run_epoch's checks of the order run
        # Python, which would raise KeyboardInterrupt before the loop.
        while np.array_equal(net.parameters, before):
            if stop.wait(0.001):
                return
        _thread.interrupt_main()

    # A shell starts background jobs with SIGINT ignored, and Python then
    # installs no handler: interrupt_main would do nothing. Python's own
    # handler, for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt_once_stepping)
    thread.start()
    try:
        result = _epoch.run_epoch(plan, state, None, order, bounds)
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)
    assert result.status == Status.INTERRUPTED
    assert 0 < result.steps < order.size


@pytest.mark.parametrize(
    "plan_change, run_change, match",
    [
        ({}, dict(params=np.zeros(3)), "holds 3 float64 parameters"),
        ({}, dict(bounds=np.array([[0, 3], [3, 99]])), "bounds\\[1\\]"),
        (dict(bounds=np.array([[0, 99]])), {}, "bounds\\[0\\]"),
        ({}, dict(order=np.full(N_SAMPLES, 99)), "order\\[0\\] = 99"),
        ({}, dict(order=np.arange(3)), "order has 3 rows"),
        (dict(bounds=[[0, 5]]), dict(bounds=np.array([[0, N_SAMPLES]])), "wider"),
        ({}, dict(velocity=None), "needs velocity"),
        (dict(loss=7), {}, "loss must be a code"),
        (dict(Y=np.zeros((N_SAMPLES, 3))), {}, "Y must have shape"),
        (dict(chunk_rows=0), {}, "chunk_rows must be at least 1"),
    ],
)
def test_bad_arguments_are_named(plan_change, run_change, match):
    run_change = dict(run_change)
    kwargs, net = _low_level(**plan_change)
    params = run_change.pop("params", net.parameters)
    velocity = run_change.pop("velocity", np.zeros_like(params))
    with pytest.raises(ValueError, match=match):
        plan = _plan.EpochPlan(**kwargs)
        state = _plan.OptimizerState(0, params, learning_rate=0.1, velocity=velocity)
        _epoch.run_epoch(plan, state, None, **run_change)


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
    assert _products.one_thread_product(A, W, out) is not None
    expected = A.astype(np.float64) @ W.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_one_thread_product_names_what_does_not_fit():
    A, W = np.ones((2, 3)), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"A \(2, 3\), W \(4, 5\)"):
        _products.one_thread_product(A, W, np.empty((2, 5)))
    with pytest.raises(ValueError, match="C- or F-contiguous"):
        _products.one_thread_product(A, np.ones((3, 10))[:, ::2], np.empty((2, 5)))


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000])
def test_squared_norm_is_the_sum_of_squares(size):
    w = np.random.RandomState(size).randn(size)
    assert _products.squared_norm(w) == pytest.approx(math.fsum(w * w), rel=1e-14)
    assert _products.squared_norm(w.astype(np.float32)) == pytest.approx(
        math.fsum(w.astype(np.float32).astype(np.float64) ** 2), rel=1e-12
    )


@pytest.mark.parametrize(
    "module, name",
    [
        (_epoch, "run_epoch"),
        (_products, "one_thread_product"),
        (_products, "squared_norm"),
    ],
)
def test_docstring_examples_run(module, name):
    # doctest.testmod does not see functions compiled by Cython.
    namespace = {**vars(module), **vars(_plan)}
    test = doctest.DocTestParser().get_doctest(
        getattr(module, name).__doc__, namespace, name, None, 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.failures == 0
