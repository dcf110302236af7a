"""The compiled loop inside training (skbatchnet._compiled) against the numpy path.

tests/test_epoch.py holds the kernel to the numpy specification epoch by
epoch; here whole fits through the estimators take the compiled path and
the numpy path (``use_numpy_epochs``) and must agree to rounding, including
how a diverged or interrupted epoch is reported.
"""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    intercept_loop_results,
    make_data,
    use_numpy_epochs,
    without_growth_rule,
)

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, _extension
from skbatchnet._averaging import WeightAverage
from skbatchnet._codes import Status
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._training import Step, TrainingData

X, Y_REG, Y_CLS = make_data(n=60, n_features=5, seed=11)
W = np.random.RandomState(1).uniform(0, 2, 60)
W[:7] = 0.0

CASES = [
    (BatchMLPClassifier, dict(solver="sgd", batch_size=8, momentum=0.9)),
    (BatchMLPClassifier, dict(solver="sgd", nesterovs_momentum=False, average=5)),
    (BatchMLPClassifier, dict(solver="adam", batch_size=1, drop_last=True)),
    (BatchMLPRegressor, dict(solver="adam", batch_size=7, drop_last="merge")),
    (BatchMLPRegressor, dict(solver="sgd", gradient_reduction="sum", batch_size=4)),
    (BatchMLPClassifier, dict(solver="adam", early_stopping=True, batch_size=16)),
    (BatchMLPRegressor, dict(solver="sgd", learning_rate="invscaling", power_t=0.3)),
    # Adam's constants away from their defaults, and an average that starts
    # after more rows than one epoch has: the loop must be given them.
    (
        BatchMLPRegressor,
        dict(solver="adam", beta_1=0.5, beta_2=0.9, epsilon=1e-3, batch_size=8),
    ),
    (BatchMLPRegressor, dict(solver="sgd", average=100, batch_size=8)),
]


def _flat(est):
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_])


def _fit(Est, params, monkeypatch=None, X=X, **fit_params):
    if monkeypatch is not None:
        use_numpy_epochs(monkeypatch)
    y = Y_CLS if Est is BatchMLPClassifier else Y_REG
    defaults = dict(
        hidden_layer_sizes=(7, 4), max_iter=6, random_state=3, learning_rate_init=0.01
    )
    est = Est(alpha=0.01, **{**defaults, **params})
    return est.fit(X, y, **fit_params)


def _sparse(X):
    X = X.copy()
    X[np.abs(X) < 0.7] = 0  # about half of the entries
    return sp.csr_matrix(X)


@pytest.mark.parametrize("to_input", [np.asarray, _sparse], ids=["dense", "csr"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("Est, params", CASES)
def test_fits_through_the_compiled_loop_equal_the_numpy_path(
    monkeypatch, Est, params, weighted, to_input
):
    fit_params = {"sample_weight": W} if weighted else {}
    fit_params["X"] = to_input(X)
    compiled = _fit(Est, params, **fit_params)
    numpy_path = _fit(Est, params, monkeypatch, **fit_params)
    assert compiled.n_iter_ == numpy_path.n_iter_
    assert compiled.t_ == numpy_path.t_
    np.testing.assert_allclose(_flat(compiled), _flat(numpy_path), rtol=1e-10)
    np.testing.assert_allclose(compiled.loss_curve_, numpy_path.loss_curve_, rtol=1e-10)
    # The state a later fit continues from (on either path) agrees too.
    _same_state(compiled, numpy_path)


def _same_state(compiled, numpy_path):
    a, b = compiled._optimizer, numpy_path._optimizer
    for name in ("t", "learning_rate"):
        if hasattr(b, name):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12)
    for name in ("ms", "us", "velocities"):
        for u, v in zip(getattr(a, name, []), getattr(b, name, [])):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-15)
    a = getattr(compiled, "_weight_average", None)
    b = getattr(numpy_path, "_weight_average", None)
    assert (a is None) == (b is None)
    if b is not None:
        assert (a.n_averaged, a.samples_seen) == (b.n_averaged, b.samples_seen)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10)


@pytest.mark.parametrize("Est, params", CASES[:4])
def test_float32_fits_through_the_compiled_loop_equal_the_numpy_path(
    monkeypatch, Est, params
):
    """A float32 fit runs the loop in float32, on float32 copies of the
    targets and weights, and agrees with the numpy path to float32 rounding."""
    X32 = X.astype(np.float32)
    made = []
    original = CompiledEpochs.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(CompiledEpochs, "__init__", spy)
    compiled = _fit(Est, params, X=X32, sample_weight=W)
    monkeypatch.undo()
    assert len(made) == 1
    arrays = made[0].plan.arrays()
    assert arrays.keys() == {"X", "Y", "sample_weight", "workspace"}
    assert all(a.dtype == np.float32 for a in arrays.values())
    numpy_path = _fit(Est, params, monkeypatch, X=X32, sample_weight=W)
    assert all(c.dtype == np.float32 for c in compiled.coefs_)
    assert compiled.n_iter_ == numpy_path.n_iter_
    np.testing.assert_allclose(_flat(compiled), _flat(numpy_path), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize(
    "batch_size, n_rows, expected",
    [(1, 60, 1), (8, 60, 8), (25, 60, 25), ("auto", 60, 60), (8, 3, 3)],
)
def test_the_loop_workspace_holds_the_widest_batch(batch_size, n_rows, expected):
    """The compiled epoch's scratch memory is sized by the widest batch (or
    the network's chunk, if smaller), not by the data set."""
    from skbatchnet.backprop import Network
    from skbatchnet.batching import Minibatcher

    net = Network.initialize([5, 7, 1], random_state=0)
    data = TrainingData(X[:n_rows], Y_REG[:n_rows, None], None, float(n_rows))
    compiled = CompiledEpochs(
        net, data, Minibatcher(batch_size), Step(alpha=0.0, reduction="mean")
    )
    assert compiled.plan.chunk_rows == min(expected, net.chunk_rows())


def test_dense_and_sparse_input_take_the_compiled_loop_and_lbfgs_does_not(
    monkeypatch,
):
    made = []
    original = CompiledEpochs.__init__

    def spy(self, *args, **kwargs):
        made.append(type(args[1].X))
        original(self, *args, **kwargs)

    monkeypatch.setattr(CompiledEpochs, "__init__", spy)
    BatchMLPRegressor(max_iter=2, random_state=0).fit(X, Y_REG)
    assert made == [np.ndarray]
    # CSC arrives as CSR: the estimator converts it, as rows are sliced.
    for matrix in (sp.csr_matrix, sp.csc_matrix):
        BatchMLPRegressor(max_iter=2, random_state=0).fit(matrix(X), Y_REG)
        assert made.pop() is sp.csr_matrix and made == [np.ndarray]
    BatchMLPRegressor(max_iter=2, random_state=0, solver="lbfgs").fit(X, Y_REG)
    assert made == [np.ndarray]


@pytest.mark.parametrize("lr", [1e4, 1e300])
def test_divergence_is_reported_as_the_numpy_path_reports_it(monkeypatch, lr):
    without_growth_rule(monkeypatch)  # the non-finite path, on both tiers
    params = dict(solver="sgd", learning_rate_init=lr, gradient_reduction="sum")
    with pytest.raises(ValueError) as compiled:
        _fit(BatchMLPRegressor, params)
    with pytest.raises(ValueError) as numpy_path:
        _fit(BatchMLPRegressor, params, monkeypatch)
    assert str(compiled.value) == str(numpy_path.value)
    assert "non-finite" in str(compiled.value)


def test_an_interrupted_compiled_epoch_keeps_the_last_completed_one(monkeypatch):
    params = dict(solver="adam", batch_size=8, average=True)
    reference = _fit(BatchMLPClassifier, {**params, "max_iter": 2})
    calls = {"n": 0}

    def after(runner, result):
        calls["n"] += 1
        if calls["n"] == 3:  # the loop saw Ctrl-C in epoch 3, mid-epoch
            return result._replace(status=Status.INTERRUPTED)
        return result

    intercept_loop_results(monkeypatch, after)
    with pytest.warns(UserWarning, match="interrupted"):
        est = _fit(BatchMLPClassifier, {**params, "max_iter": 5})
    assert est.n_iter_ == 2 and est.loss_curve_ == reference.loss_curve_
    assert np.array_equal(_flat(est), _flat(reference))
    assert est._optimizer.t == reference._optimizer.t


def test_without_the_extension_fits_take_the_numpy_path_and_say_how_to_build_it(
    monkeypatch,
):
    # As if the package had been copied without building it; undone after.
    # (tests/test_registries.py runs a real copy without its extension.)
    monkeypatch.setattr(_extension, "_epoch", None)
    monkeypatch.setattr(_extension, "_warned", [])
    made = []
    monkeypatch.setattr(CompiledEpochs, "__init__", lambda *args: made.append(args))
    with pytest.warns(RuntimeWarning, match="not built.*C compiler") as record:
        without = _fit(BatchMLPRegressor, CASES[4][1])
        _fit(BatchMLPRegressor, CASES[4][1])
    assert len([w for w in record if "not built" in str(w.message)]) == 1  # once
    assert made == []
    monkeypatch.undo()
    numpy_path = _fit(BatchMLPRegressor, CASES[4][1], monkeypatch)
    np.testing.assert_array_equal(_flat(without), _flat(numpy_path))


def test_the_loop_is_given_contiguous_rows_of_the_network_dtype():
    """Rows in another memory order, and targets and weights of another
    dtype, are copied for the loop: the epoch is the one taken on the
    converted arrays."""
    from skbatchnet._optimizers import SGD
    from skbatchnet.backprop import Network
    from skbatchnet.batching import Minibatcher

    step = Step(alpha=0.01, reduction="mean")
    X32 = np.asfortranarray(X, dtype=np.float32)
    results = []
    for rows, targets, weights in [
        (X32, Y_REG[:, None], W),
        (
            np.ascontiguousarray(X32),
            Y_REG[:, None].astype(np.float32),
            W.astype(np.float32),
        ),
    ]:
        net = Network.initialize([5, 7, 1], random_state=0, dtype=np.float32)
        data = TrainingData(rows, targets, weights, W.sum())
        compiled = CompiledEpochs(net, data, Minibatcher(8), step)
        optimizer = SGD([net.parameters], 0.01, "constant", 0.9, True)
        result = compiled.run(None, optimizer, None)
        results.append((result.steps, net.parameters.copy()))
    assert results[0][0] == results[1][0] == 8
    np.testing.assert_array_equal(results[0][1], results[1][1])


def _runner_parts(dtype=np.float64, n=60):
    from skbatchnet.backprop import Network

    net = Network.initialize([5, 7, 1], random_state=0, dtype=dtype)
    data = TrainingData(X[:n].astype(dtype), Y_REG[:n, None], None, float(n))
    return net, data


@pytest.mark.parametrize(
    "case, expected",
    [
        ("dense", True),
        ("csr", True),
        ("csc", False),
        ("coo", False),
        ("other dtype", False),
        ("float16 network", False),
        ("lbfgs", False),
    ],
)
def test_supports_admits_dense_or_csr_rows_of_the_network_dtype(case, expected):
    from skbatchnet._optimizers import LBFGS, SGD

    net, data = _runner_parts(np.float16 if case == "float16 network" else np.float64)
    rows = {
        "csr": sp.csr_matrix,
        "csc": sp.csc_matrix,
        "coo": sp.coo_matrix,
        "other dtype": lambda A: A.astype(np.float32),
    }.get(case, np.asarray)(data.X)
    optimizer = LBFGS(10, 10, 1e-4) if case == "lbfgs" else SGD([net.parameters], 0.01)
    step = Step(alpha=0.0, reduction="mean")
    assert CompiledEpochs.supports(net, rows, optimizer, step) is expected


def test_the_plan_reads_the_thresholds_of_codes_unless_given():
    from skbatchnet import _codes
    from skbatchnet._threads import splits_products
    from skbatchnet.batching import Minibatcher

    net, data = _runner_parts()
    step = Step(alpha=0.0, reduction="mean")
    default = CompiledEpochs(net, data, Minibatcher(8), step).plan.thresholds
    assert default == {
        "tiny_product": _codes.TINY_PRODUCT,
        # Every batch cut into tiles with OpenBLAS, none with another BLAS
        # (_threads.py).
        "split_rows": np.iinfo(np.intp).max if splits_products() else 0,
        "gemv_limit": _codes.ONE_THREAD_GEMV,
        "gemm_limit": _codes.ONE_THREAD_GEMM,
        "block_rows": _codes.BLOCK_ROWS,
        "split_work": _codes.SPLIT_WORK,
        "update_piece": _codes.UPDATE_PIECE,
        "thread_work": _codes.THREAD_WORK,
        "choose_threads": True,
        "check_steps": _codes.CHECK_STEPS,
        "check_work": _codes.CHECK_WORK,
    }
    given = dict(tiny_product=0, split_rows=3, gemv_limit=7, gemm_limit=40)
    runner = CompiledEpochs(net, data, Minibatcher(8), step, thresholds=given)
    assert runner.plan.thresholds == {**default, **given}


def test_the_loop_state_is_made_once_per_optimizer_and_follows_a_new_one():
    from skbatchnet._optimizers import SGD
    from skbatchnet.batching import Minibatcher

    net, data = _runner_parts()
    runner = CompiledEpochs(net, data, Minibatcher(8), Step(0.0, "mean"))
    first = SGD([net.parameters], 0.01, "constant", 0.9, True)
    averages = [WeightAverage(net.parameters.size, net.dtype) for _ in range(2)]
    runner.run(None, first, averages[0])
    state, average = runner._state[1], runner._average[1]
    runner.run(None, first, averages[0])
    # Built once for the fit.
    assert runner._state[1] is state and runner._average[1] is average
    # A restored checkpoint brings another optimizer and average: their
    # buffers, not the old ones', must be updated.
    second = SGD([net.parameters], 0.01, "constant", 0.9, True)
    before = first.velocities[0].copy(), averages[0].mean.copy()
    runner.run(None, second, averages[1])
    assert np.array_equal(first.velocities[0], before[0])
    assert np.array_equal(averages[0].mean, before[1])
    assert np.any(second.velocities[0] != 0) and np.any(averages[1].mean != 0)


def test_missing_kernels_names_each_entry_without_a_code(monkeypatch):
    from skbatchnet._compiled import missing_kernels
    from skbatchnet._losses import LOSSES
    from skbatchnet._optimizers import SGD
    from skbatchnet.reduction import REDUCTIONS

    class Unlisted(SGD):
        code = None

    net, _ = _runner_parts()
    loss = LOSSES[net.loss]
    monkeypatch.setitem(LOSSES, net.loss, dataclasses.replace(loss, code=None))
    monkeypatch.setattr("skbatchnet._compiled._warned", set())
    optimizer = Unlisted([net.parameters], 0.01)
    assert missing_kernels(net, optimizer, "mean") == [
        "loss='squared_error'",
        "solver='Unlisted'",
    ]
    with monkeypatch.context() as patch:
        entry = dataclasses.replace(REDUCTIONS["sum"], code=None)
        patch.setitem(REDUCTIONS, "sum", entry)
        assert missing_kernels(net, optimizer, "sum") == [
            "loss='squared_error'",
            "gradient_reduction='sum'",
            "solver='Unlisted'",
        ]
    step = Step(alpha=0.0, reduction="mean")
    expected = (
        "loss='squared_error', solver='Unlisted' has no compiled kernel; training "
        "runs on the numpy path. Give its registry entry a code and a kernel in "
        "_kernels.pxd to train it in the compiled loop."
    )
    with pytest.warns(RuntimeWarning) as record:
        assert not CompiledEpochs.supports(net, X, optimizer, step)
        assert not CompiledEpochs.supports(net, X, optimizer, step)  # once
        assert not CompiledEpochs.supports(net, X, SGD([net.parameters]), step)
    assert [str(w.message) for w in record] == [
        expected,
        expected.replace(", solver='Unlisted'", ""),  # another combination
    ]
