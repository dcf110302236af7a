"""skbatchnet.dask.DataParallel: training reduced across the workers of a cluster.

The oracle for ``strategy='gradient'`` is the wrapped estimator fitted in
memory on the concatenated data; for ``strategy='average'`` it is the same
in-memory fit, in the one case where averaging weights equals averaging
gradients. Every test that needs a cluster shares the module-scoped ``client`` fixture
of conftest (two single-threaded worker processes on the loopback); the
fault-tolerance test starts one of its own, whose worker it kills.

Workers cannot import this module: what they run is library code or a
function defined inside a test (pickled by value).
"""

import importlib
import inspect
import os
import signal
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest
from conftest import dask_client

distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
from dask.sizeof import sizeof  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, StepBatchSize  # noqa: E402
from skbatchnet._dask_data import ClusterData  # noqa: E402
from skbatchnet.dask import DataParallel  # noqa: E402

N = 160
ROW_CHUNKS = (60, 70, 30)  # uneven, and not multiples of the batches
RTOL = 1e-10


def _data(kind="regression", seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N, 6))
    if kind == "regression":
        y = X @ rng.normal(size=6) + 0.3 * np.sin(3 * X[:, 0])
    else:
        y = np.digitize(X @ rng.normal(size=6), [-0.5, 0.5])  # three classes
    return X, y, rng.uniform(0, 2, size=N) * (rng.uniform(size=N) > 0.1)


def _dask(X, y, w=None, column_chunks=-1):
    dX = da.from_array(X, chunks=(ROW_CHUNKS, column_chunks))
    # y and the weights chunked otherwise: the wrapper aligns them on X.
    dy = da.from_array(y, chunks=70)
    return dX, dy, None if w is None else da.from_array(w, chunks=100)


def _flat(estimator):
    return np.concatenate([a.ravel() for a in estimator.coefs_ + estimator.intercepts_])


def _assert_close(actual, expected, rtol=RTOL):
    a, b = _flat(actual), _flat(expected)
    assert np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b))


GRADIENT_CASES = [
    # solver, batch_size, reduction, weighted, other settings
    ("sgd", 7, "mean", True, {"drop_last": "merge", "max_iter": 2}),
    ("sgd", 32, "sum", False, {"learning_rate_init": 1e-3, "average": True}),
    ("sgd", "full", "mean", True, {"shuffle": False, "nesterovs_momentum": False}),
    ("adam", 32, "mean", True, {"learning_rate": "adaptive"}),
    ("adam", 7, "sum", False, {"drop_last": True, "max_iter": 1}),
    ("adam", "full", "sum", True, {"learning_rate_init": 1e-3}),
    ("sgd", 7, "unbiased", True, {"max_iter": 2}),
    ("adam", 32, "unbiased", True, {"average": True}),
    ("sgd", 16, "sum", True, {"max_gradient_norm": 0.5, "learning_rate_init": 1e-3}),
    ("adam", 7, "unbiased", False, {"max_gradient_norm": 0.1}),
    ("sgd", StepBatchSize({0: 7, 2: 32}), "sum", True, {"learning_rate_init": 1e-3}),
    ("adam", StepBatchSize({0: 7, 1: 32, 3: "full"}), "mean", False, {"average": True}),
    ("lbfgs", "auto", "mean", True, {"max_iter": 15}),
    ("lbfgs", "auto", "mean", False, {"max_iter": 15}),
]


@pytest.mark.parametrize(
    "solver, batch_size, reduction, weighted, other", GRADIENT_CASES
)
def test_gradient_strategy_follows_the_in_memory_fit(
    client, solver, batch_size, reduction, weighted, other
):
    X, y, w = _data()
    w = w if weighted else None
    params = dict(max_iter=4, alpha=1e-2, learning_rate_init=1e-2, random_state=0)
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(7,),
        solver=solver,
        batch_size=batch_size,
        gradient_reduction=reduction,
        **{**params, **other},
    )
    expected = clone(estimator).fit(X, y, sample_weight=w)
    model = DataParallel(estimator).fit(*_dask(X, y, w, column_chunks=2))
    _assert_close(model.estimator_, expected)
    fitted = model.estimator_
    np.testing.assert_allclose(fitted.loss_curve_, expected.loss_curve_, rtol=RTOL)
    assert (fitted.n_iter_, fitted.t_) == (expected.n_iter_, expected.t_)
    assert model.estimator is estimator and not hasattr(estimator, "coefs_")
    # The fitted model is an ordinary in-memory estimator.
    np.testing.assert_allclose(fitted.predict(X), expected.predict(X), rtol=1e-9)


def test_classifier_and_lazy_predictions(client):
    X, y, w = _data("classification")
    estimator = BatchMLPClassifier(
        hidden_layer_sizes=(5,), batch_size=16, max_iter=3, random_state=0
    )
    expected = clone(estimator).fit(X, y, sample_weight=w)
    model = DataParallel(estimator).fit(*_dask(X, y, w))
    _assert_close(model.estimator_, expected)
    np.testing.assert_array_equal(model.classes_, expected.classes_)
    dX = da.from_array(X, chunks=(ROW_CHUNKS, -1))
    labels, proba = model.predict(dX), model.predict_proba(dX)
    assert isinstance(labels, da.Array) and isinstance(proba, da.Array)
    np.testing.assert_array_equal(labels.compute(), expected.predict(X))
    np.testing.assert_allclose(proba.compute(), expected.predict_proba(X), rtol=1e-9)
    assert isinstance(model.predict(X), np.ndarray)  # numpy in, numpy out
    score = model.score(dX, da.from_array(y, chunks=100))
    assert score == pytest.approx(expected.score(X, y))


def test_dask_dataframe_input(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y, _ = _data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(4,), batch_size=32, max_iter=2, random_state=0
    )
    expected = clone(estimator).fit(frame, y)
    dframe = dd.from_pandas(frame, npartitions=3)
    model = DataParallel(estimator).fit(dframe, dd.from_array(y, chunksize=80))
    _assert_close(model.estimator_, expected)
    assert list(model.estimator_.feature_names_in_) == list(frame.columns)
    np.testing.assert_allclose(
        model.predict(dframe).compute(), expected.predict(frame), rtol=1e-9
    )


def test_rerun_on_the_same_layout_is_bitwise_identical(client):
    X, y, w = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(6,), solver="sgd", batch_size=64, max_iter=2, random_state=1
    )
    first = DataParallel(estimator).fit(*_dask(X, y, w))
    second = DataParallel(estimator).fit(*_dask(X, y, w))
    np.testing.assert_array_equal(_flat(first.estimator_), _flat(second.estimator_))


def _interleaved(X, y, w, share):
    """Rows reordered so that in-memory batch r is the blocks' r-th shares.

    The first half of the rows is block 0, the second half block 1; batch r
    of ``2 * share`` rows holds rows ``r*share:(r+1)*share`` of each block.
    """
    half = len(X) // 2
    order = np.concatenate(
        [
            np.r_[start : start + share, half + start : half + start + share]
            for start in range(0, half, share)
        ]
    )
    return X[order], y[order], w[order]


@pytest.mark.parametrize("share", [80, 16])
def test_averaging_one_local_step_equals_the_global_step(client, share):
    # Plain SGD, 'mean', one local step on each block's share of a global
    # batch: the weighted average of the copies is the global batch's step.
    X, y, w = _data()
    settings = dict(
        hidden_layer_sizes=(5,),
        solver="sgd",
        momentum=0.0,
        shuffle=False,
        alpha=0.1,
        learning_rate_init=0.05,
        max_iter=3,
        random_state=0,
    )
    local = BatchMLPRegressor(batch_size=share, **settings)
    model = DataParallel(local, strategy="average", local_steps=1)
    dX, dy, dw = (da.from_array(A, chunks=N // 2) for A in (X, y, w))
    model.fit(dX, dy, dw)
    Xi, yi, wi = _interleaved(X, y, w, share)
    expected = BatchMLPRegressor(batch_size=2 * share, **settings)
    expected.fit(Xi, yi, sample_weight=wi)
    _assert_close(model.estimator_, expected)


def test_averaging_with_unit_weights_is_the_same_for_unbiased_and_mean(client):
    # Each block's batches are drawn from the block: 'unbiased' divides by
    # the block's expected batch weight, which unit weights make the batch's.
    X, y, _ = _data()
    dX, dy = (da.from_array(A, chunks=N // 2) for A in (X, y))
    fits = {}
    for reduction in ("mean", "unbiased"):
        estimator = BatchMLPRegressor(
            hidden_layer_sizes=(5,),
            solver="sgd",
            batch_size=16,
            max_iter=2,
            random_state=0,
            gradient_reduction=reduction,
        )
        model = DataParallel(estimator, strategy="average", local_steps=3)
        fits[reduction] = model.fit(dX, dy).estimator_
    _assert_close(fits["unbiased"], fits["mean"])


@pytest.mark.parametrize(
    "change", [{"momentum": 0.9}, {"local_steps": 4}, {"solver": "adam"}]
)
def test_averaging_differs_from_gradient_reduction_otherwise(client, change):
    X, y, w = _data()
    local_steps = change.pop("local_steps", 1)
    settings = dict(hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, shuffle=False)
    settings.update(learning_rate_init=0.05, max_iter=3, random_state=0, **change)
    dX, dy, dw = (da.from_array(A, chunks=N // 2) for A in (X, y, w))
    model = DataParallel(
        BatchMLPRegressor(batch_size=16, **settings),
        strategy="average",
        local_steps=local_steps,
    ).fit(dX, dy, dw)
    Xi, yi, wi = _interleaved(X, y, w, 16)
    expected = BatchMLPRegressor(batch_size=32, **settings).fit(
        Xi, yi, sample_weight=wi
    )
    a, b = _flat(model.estimator_), _flat(expected)
    assert np.max(np.abs(a - b)) > 1e-4 * np.max(np.abs(b))
    # Still training: the objective of the averaged weights went down.
    curve = model.estimator_.loss_curve_
    assert curve[-1] < curve[0]


@pytest.mark.parametrize("strategy", ["gradient", "average"])
def test_nothing_data_sized_reaches_the_client(client, monkeypatch, strategy):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4000, 40))
    y = X[:, 0] - X[:, 1]
    gathered = []
    gather = client.gather

    def recording_gather(futures, *args, **kwargs):
        results = gather(futures, *args, **kwargs)
        gathered.extend(
            sizeof(r) for r in (results if isinstance(results, list) else [results])
        )
        return results

    monkeypatch.setattr(client, "gather", recording_gather)
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(3,),
        solver="sgd",
        batch_size=500,
        max_iter=2,
        random_state=0,
    )
    model = DataParallel(estimator, strategy=strategy, local_steps=2)
    model.fit(da.from_array(X, chunks=(1000, -1)), da.from_array(y, chunks=1000))
    n_parameters = _flat(model.estimator_).size  # 127 parameters, ~1 kB
    assert gathered and max(gathered) < 8 * 8 * n_parameters + 2000
    assert max(gathered) < X.nbytes / 100  # X is 1.28 MB


def test_unknown_chunk_sizes_are_refused(client):
    X, y, _ = _data()
    dX, dy, _ = _dask(X, y)
    keep = dX[:, 0] > -10  # every row, but Dask cannot know how many
    with pytest.raises(ValueError, match=r"X.compute_chunk_sizes\(\)"):
        DataParallel(BatchMLPRegressor()).fit(dX[keep], dy)
    with pytest.raises(ValueError, match=r"y.compute_chunk_sizes\(\)"):
        DataParallel(BatchMLPRegressor()).fit(dX, dy[keep])


def test_worker_exception_surfaces_and_leaves_the_wrapper_unchanged(client):
    X, y, w = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(5,), solver="sgd", batch_size=32, max_iter=2, random_state=0
    )
    model = DataParallel(estimator, strategy="average").fit(*_dask(X, y, w))
    before, fitted = _flat(model.estimator_), model.estimator_
    # A rate this large diverges inside a block's local steps, on a worker.
    model.set_params(estimator__learning_rate_init=1e6)
    with pytest.raises(ValueError, match="Training diverged") as info:
        model.fit(*_dask(X, 1e3 * y, w))
    frames = "".join(traceback.format_tb(info.value.__traceback__))
    assert "local_round" in frames and "run_epoch" in frames  # the worker's frames
    assert model.estimator_ is fitted
    np.testing.assert_array_equal(_flat(model.estimator_), before)


def test_malformed_sparse_blocks_are_refused_on_the_workers(client):
    """A worker checks a sparse block's structure before scipy or the network
    reads it: the task raises a ValueError that names the entry, and the
    worker processes live on (a crash would have restarted them). The
    caller's blocks and the fitted model are unchanged."""
    import scipy.sparse as sp

    from skbatchnet._dask_data import partial_sums

    X, y, _ = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(5,), batch_size="full", max_iter=2, random_state=0
    )
    model = DataParallel(estimator).fit(*_dask(X, y))
    before = _flat(model.estimator_)

    def malformed(block, where="indices", value=10**8):  # pickled by value
        block = sp.csr_matrix(block)
        getattr(block, where)[0] = value
        return block

    dX = da.from_array(X, chunks=(ROW_CHUNKS, -1)).map_blocks(
        malformed, meta=sp.csr_matrix((0, X.shape[1]))
    )
    workers = client.run(os.getpid)
    with pytest.raises(ValueError, match=r"X.indices\[0\] = 100000000 \(in row 0\)"):
        model.predict(dX).compute()
    # A training task (blocks of DataParallel.fit are dense; a sparse one
    # that reached a task would be checked there too).
    net = model.estimator_._network()
    spec = (net.layer_units, net.activation, net.loss)
    for where, value, message in [
        ("indices", 10**8, r"X.indices\[0\] = 100000000"),
        ("indptr", 10**8, r"X.indptr\[0\] must be 0"),
    ]:
        block = client.submit(malformed, X[:60], where, value)
        rows = np.arange(60)
        task = client.submit(
            partial_sums, net.parameters, spec, block, y[:60, None], None, rows
        )
        with pytest.raises(ValueError, match=message):
            task.result()
    assert client.run(os.getpid) == workers
    np.testing.assert_array_equal(_flat(model.estimator_), before)


@pytest.mark.parametrize("strategy", ["gradient", "average"])
def test_a_runaway_loss_stops_the_fit_and_leaves_the_wrapper_unfitted(client, strategy):
    # Full-batch SGD at this rate: the loss stays finite and grows about 100
    # times per epoch, past the divergence-by-growth rule (1000 times the
    # first epoch's, two epochs in a row) by epoch 5.
    X, y, _ = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(8,),
        activation="identity",
        solver="sgd",
        momentum=0.0,
        learning_rate_init=1.0,
        batch_size="full",
        max_iter=30,
        random_state=0,
    )
    with pytest.raises(ValueError) as in_memory:
        clone(estimator).fit(X, y)
    model = DataParallel(estimator, strategy=strategy)
    with pytest.raises(ValueError) as on_cluster:
        model.fit(*_dask(X, y)[:2])
    message = str(on_cluster.value)
    assert message.startswith("Training diverged: the training loss grew to "), message
    if strategy == "gradient":  # the in-memory fit's steps, so its words
        assert message == str(in_memory.value)
    assert not hasattr(model, "estimator_")


@pytest.mark.parametrize("strategy", ["gradient", "average"])
def test_warnings_name_the_line_that_called_fit(client, strategy):
    X, y, _ = _data()
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(5,), solver="sgd", batch_size=32, max_iter=1
    )
    model = DataParallel(estimator, strategy=strategy)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        model.fit(*_dask(X, y)[:2])
    [warning] = [w for w in record if "Maximum iterations" in str(w.message)]
    assert (warning.filename, warning.lineno) == (__file__, line)


@pytest.mark.parametrize(
    "setting, strategy, name",
    [
        ({"early_stopping": True}, "gradient", "early_stopping"),
        ({"warm_start": True}, "gradient", "warm_start"),
        ({"verbose": True}, "gradient", "verbose"),
        ({"solver": "lbfgs"}, "average", "lbfgs"),
        ({"learning_rate": "invscaling", "solver": "sgd"}, "average", "invscaling"),
        ({"average": True}, "average", "average=True"),
        ({"batch_size": StepBatchSize({0: 8})}, "average", "fixed batch_size"),
        ({}, "bogus", "strategy"),
    ],
)
def test_unsupported_settings_are_named(client, setting, strategy, name):
    X, y, _ = _data()
    model = DataParallel(BatchMLPRegressor(**setting), strategy=strategy)
    with pytest.raises(ValueError, match=name):
        model.fit(*_dask(X, y)[:2])
    with pytest.raises(ValueError, match="local_steps"):
        DataParallel(BatchMLPRegressor(), strategy="average", local_steps=0).fit(
            *_dask(X, y)[:2]
        )
    with pytest.raises(TypeError, match="from_array"):
        DataParallel(BatchMLPRegressor()).fit(X, y)
    assert not hasattr(DataParallel(BatchMLPRegressor()), "partial_fit")


def test_clone_and_grid_search(client):
    X, y, _ = _data()
    model = DataParallel(BatchMLPRegressor(max_iter=1, random_state=0))
    assert clone(model).get_params()["estimator__batch_size"] == "auto"
    search = GridSearchCV(model, {"estimator__batch_size": [64, "full"]}, cv=2)
    search.fit(*_dask(X, y)[:2])
    assert search.best_params_["estimator__batch_size"] in (64, "full")
    assert isinstance(search.best_estimator_.estimator_, BatchMLPRegressor)


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.delitem(sys.modules, "skbatchnet.dask")
    with pytest.raises(ImportError, match=r'pip install "skbatchnet\[dask\]"'):
        importlib.import_module("skbatchnet.dask")
    code = (
        "import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
        "import skbatchnet; print(skbatchnet.BatchMLPRegressor.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "BatchMLPRegressor" in out.stdout, out.stderr


def test_docstring_example_runs(client):
    # Its own in-process cluster; closing it leaves this module's the default.
    import doctest

    module = importlib.import_module("skbatchnet.dask")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
    assert distributed.default_client() is client


def test_a_killed_worker_does_not_change_the_fit(monkeypatch):
    # The data has lineage (a random graph, not scattered from here), so the
    # scheduler recomputes the blocks the killed worker held.
    with dask_client() as client:
        X = da.random.RandomState(0).normal(size=(600, 5), chunks=(100, 5))
        y = X[:, 0] - 2 * X[:, 1]
        estimator = BatchMLPRegressor(
            hidden_layer_sizes=(4,), batch_size=100, max_iter=2, random_state=0
        )
        undisturbed = DataParallel(estimator).fit(X, y)
        submit, steps, killed = ClusterData.submit, [], []

        def submit_then_kill(self, parameters, rows, max_norm=None):
            futures = submit(self, parameters, rows, max_norm)
            steps.append(rows)
            if len(steps) == 5:  # a chosen step, with its tasks in flight
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            return futures

        monkeypatch.setattr(ClusterData, "submit", submit_then_kill)
        disturbed = DataParallel(estimator).fit(X, y)
        client.wait_for_workers(2, timeout=60)
        assert killed and killed[0] not in client.run(os.getpid).values()
    np.testing.assert_array_equal(
        _flat(disturbed.estimator_), _flat(undisturbed.estimator_)
    )
