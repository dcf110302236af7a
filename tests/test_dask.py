"""Dask integration: joblib's dask backend, blockwise partial_fit, worker BLAS.

Every test that needs a cluster shares the module-scoped ``client`` fixture
of conftest: two single-threaded worker processes listening on 127.0.0.1 only.

The workers cannot import this test module, so what they run is either a
library callable (pickled by reference) or a function defined inside a test
(which distributed pickles by value with cloudpickle), never a module-level
helper from here.
"""

import math
import os

import numpy as np
import pytest
from conftest import BLAS_THREAD_CAPS, worker_addresses

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import joblib  # noqa: E402
import threadpoolctl  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.metrics import mean_squared_error  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, Minibatcher  # noqa: E402

CHUNK_ROWS = 50
N_SAMPLES = 230  # four full chunks of 50 rows and a short last one of 30
RTOL, ATOL = 1e-10, 1e-12


# -- data and helpers ---------------------------------------------------------


def _classification_data():
    X, y = make_classification(
        n_samples=N_SAMPLES,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    return X, y


def _regression_data():
    X, y = make_regression(n_samples=N_SAMPLES, n_features=6, noise=1.0, random_state=0)
    return X, y / y.std()


def _chunked(X, y):
    """Dask arrays of X and y in row chunks of CHUNK_ROWS (one column chunk)."""
    dX = da.from_array(X, chunks=(CHUNK_ROWS, -1))
    dy = da.from_array(y, chunks=CHUNK_ROWS)
    return dX, dy


def _import_incremental():
    """dask_ml.wrappers.Incremental, or skip the test if it cannot be imported.

    Not pytest.importorskip: since pytest 8.2 that skips only on
    ModuleNotFoundError, and a dask-ml that is installed but broken against
    this scikit-learn, numpy or dask fails with another ImportError.
    """
    try:
        from dask_ml.wrappers import Incremental
    except ImportError as exc:
        pytest.skip(f"dask_ml.wrappers.Incremental cannot be imported: {exc!r}")
    return Incremental


def _numpy_blocks(array, dask_array):
    """The rows of ``array`` cut at the row-chunk boundaries of ``dask_array``."""
    stops = np.cumsum(dask_array.chunks[0])
    return [
        array[stop - rows : stop] for rows, stop in zip(dask_array.chunks[0], stops)
    ]


def _sequential_partial_fit(estimator, X_blocks, y_blocks, order, **kwargs):
    """partial_fit on each numpy block in ``order``, in this process."""
    model = clone(estimator)
    for i in order:
        model.partial_fit(X_blocks[i], y_blocks[i], **kwargs)
    return model


def _assert_same_weights(actual, expected):
    assert len(actual.coefs_) == len(expected.coefs_)
    pairs = zip(
        actual.coefs_ + actual.intercepts_, expected.coefs_ + expected.intercepts_
    )
    for got, want in pairs:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _blas_threads(threadpool_info):
    """``{library path: num_threads}`` of the BLAS entries of threadpool_info()."""
    return {
        info["filepath"]: info["num_threads"]
        for info in threadpool_info
        if info["user_api"] == "blas"
    }


def _blas_threads_after_a_fit(client, worker):
    """Train a little as a task on ``worker``, then read its BLAS pools there."""
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    model = BatchMLPClassifier(hidden_layer_sizes=(4,), batch_size=8, random_state=0)
    pin = {"pure": False, "workers": [worker], "allow_other_workers": False}
    client.submit(model.partial_fit, X, y, classes=np.unique(y), **pin).result()
    info = client.submit(threadpoolctl.threadpool_info, **pin).result()
    return _blas_threads(info)


# -- grid search with joblib's dask backend ---------------------------------


def test_grid_search_on_the_cluster_matches_sequential_search(client):
    X, y = make_classification(
        n_samples=150,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=0,
    )
    estimator = BatchMLPClassifier(
        hidden_layer_sizes=(10,),
        solver="sgd",
        learning_rate_init=0.003,
        max_iter=30,
        random_state=0,
    )
    grid = {"batch_size": [8, 32, "full"], "gradient_reduction": ["mean", "sum"]}

    def search(**kwargs):
        return GridSearchCV(estimator, grid, cv=3, error_score="raise", **kwargs)

    with (
        distributed.get_task_stream(client) as tasks,
        joblib.parallel_config(backend="dask"),
    ):
        on_cluster = search().fit(X, y)
    in_process = search(n_jobs=1).fit(X, y)

    workers = set(worker_addresses(client))
    assert tasks.data, "no task ran on the cluster"
    assert {task["worker"] for task in tasks.data} <= workers

    a, b = on_cluster.cv_results_, in_process.cv_results_
    assert a["params"] == b["params"]
    assert len(a["params"]) == 6
    for key in ["mean_test_score", *(f"split{k}_test_score" for k in range(3))]:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(a["rank_test_score"], b["rank_test_score"])
    # The candidates do differ, so equal results are not a coincidence.
    assert np.unique(a["mean_test_score"]).size > 1
    assert on_cluster.best_params_ == in_process.best_params_
    _assert_same_weights(on_cluster.best_estimator_, in_process.best_estimator_)


# -- one partial_fit per chunk ----------------------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_incremental_classifier_is_partial_fit_per_block_in_order(client, solver):
    Incremental = _import_incremental()
    X, y = _classification_data()
    dX, dy = _chunked(X, y)
    classes = np.unique(y)
    estimator = BatchMLPClassifier(
        hidden_layer_sizes=(8,), solver=solver, batch_size=16, random_state=0
    )

    inc = Incremental(estimator, shuffle_blocks=False)
    inc.fit(dX, dy, classes=classes)
    fitted = inc.estimator_

    X_blocks, y_blocks = _numpy_blocks(X, dX), _numpy_blocks(y, dX)
    n_blocks = len(X_blocks)
    assert [len(b) for b in X_blocks] == [50, 50, 50, 50, 30]
    expected = _sequential_partial_fit(
        estimator, X_blocks, y_blocks, range(n_blocks), classes=classes
    )

    # partial_fit adds one epoch per call and counts every row it sees once.
    assert fitted.n_iter_ == expected.n_iter_ == n_blocks
    assert fitted.t_ == N_SAMPLES
    np.testing.assert_allclose(
        fitted.loss_curve_, expected.loss_curve_, rtol=RTOL, atol=ATOL
    )
    _assert_same_weights(fitted, expected)
    np.testing.assert_array_equal(fitted.classes_, classes)
    # The wrapper exposes the learned attributes and predicts blockwise.
    np.testing.assert_allclose(inc.coefs_[0], fitted.coefs_[0], rtol=0, atol=0)
    prediction = inc.predict(dX)
    assert isinstance(prediction, da.Array)
    np.testing.assert_array_equal(prediction.compute(), expected.predict(X))
    assert inc.score(dX, dy) == pytest.approx(expected.score(X, y))

    # The order matters, so the equality above pins it down.
    backwards = _sequential_partial_fit(
        estimator, X_blocks, y_blocks, reversed(range(n_blocks)), classes=classes
    )
    assert not np.allclose(backwards.coefs_[0], fitted.coefs_[0], rtol=RTOL)


def test_incremental_shuffled_blocks_follow_its_random_state(client):
    Incremental = _import_incremental()
    X, y = _classification_data()
    dX, dy = _chunked(X, y)
    classes = np.unique(y)
    estimator = BatchMLPClassifier(
        hidden_layer_sizes=(8,), solver="sgd", batch_size=16, random_state=0
    )

    # Incremental's default: shuffle the order of the blocks (not the rows).
    inc = Incremental(estimator, random_state=3).fit(dX, dy, classes=classes)

    order = list(range(dX.numblocks[0]))
    check_random_state(3).shuffle(order)
    assert order != sorted(order)
    expected = _sequential_partial_fit(
        estimator, _numpy_blocks(X, dX), _numpy_blocks(y, dX), order, classes=classes
    )
    _assert_same_weights(inc.estimator_, expected)


def test_incremental_regressor_is_partial_fit_per_block_in_order(client):
    Incremental = _import_incremental()
    X, y = _regression_data()
    dX, dy = _chunked(X, y)
    estimator = BatchMLPRegressor(
        hidden_layer_sizes=(8,),
        solver="sgd",
        learning_rate_init=0.01,
        batch_size=16,
        random_state=0,
    )

    inc = Incremental(
        estimator, shuffle_blocks=False, scoring="neg_mean_squared_error"
    ).fit(dX, dy)
    fitted = inc.estimator_

    X_blocks, y_blocks = _numpy_blocks(X, dX), _numpy_blocks(y, dX)
    expected = _sequential_partial_fit(
        estimator, X_blocks, y_blocks, range(len(X_blocks))
    )
    assert fitted.n_iter_ == len(X_blocks)
    assert fitted.t_ == N_SAMPLES
    np.testing.assert_allclose(
        fitted.loss_curve_, expected.loss_curve_, rtol=RTOL, atol=ATOL
    )
    _assert_same_weights(fitted, expected)
    np.testing.assert_allclose(
        inc.predict(dX).compute(), expected.predict(X), rtol=RTOL, atol=ATOL
    )
    # With dask arrays, a scoring that dask-ml can compute blockwise; its
    # default for regressors ('r2') fails with dask >= 2025.2 (dask-ml #1012).
    np.testing.assert_allclose(
        inc.score(dX, dy), -mean_squared_error(y, expected.predict(X)), rtol=1e-9
    )

    # Incremental.partial_fit continues from estimator_: a second pass.
    inc.partial_fit(dX, dy)
    for X_block, y_block in zip(X_blocks, y_blocks):
        expected.partial_fit(X_block, y_block)
    assert inc.estimator_.n_iter_ == 2 * len(X_blocks)
    _assert_same_weights(inc.estimator_, expected)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_plain_dask_partial_fit_per_block_matches_sequential(client, kind):
    # What Incremental does, with dask alone: a chain of delayed partial_fit
    # calls, each on one block of the chunked arrays.
    if kind == "classifier":
        X, y = _classification_data()
        estimator = BatchMLPClassifier(
            hidden_layer_sizes=(8,), solver="adam", batch_size=16, random_state=0
        )
        kwargs = {"classes": np.unique(y)}
    else:
        X, y = _regression_data()
        estimator = BatchMLPRegressor(
            hidden_layer_sizes=(8,),
            solver="sgd",
            learning_rate_init=0.01,
            batch_size=16,
            random_state=0,
        )
        kwargs = {}
    dX, dy = _chunked(X, y)
    X_parts = dX.to_delayed().ravel()  # one Delayed per row chunk
    y_parts = dy.to_delayed().ravel()
    assert len(X_parts) == len(y_parts) == 5

    model = dask.delayed(clone(estimator))
    keys = [f"partial_fit-{kind}-block-{i}" for i in range(len(X_parts))]
    for X_part, y_part, key in zip(X_parts, y_parts, keys):
        # partial_fit returns the estimator, so the calls chain.
        model = model.partial_fit(X_part, y_part, **kwargs, dask_key_name=key)
    with distributed.get_task_stream(client) as tasks:
        fitted = model.compute()

    # One task per block, each on a worker of the cluster.
    steps = {t["key"]: t for t in tasks.data if t["key"] in keys}
    assert sorted(steps) == sorted(keys)
    assert {t["worker"] for t in steps.values()} <= set(worker_addresses(client))
    # The order of the blocks is not checked through the task stream's start
    # times: the scheduler shifts each worker's clock by an estimated offset,
    # off by milliseconds, so tasks on two workers can appear out of order.
    # The weights below depend on the order and match the sequential fit.

    X_blocks, y_blocks = _numpy_blocks(X, dX), _numpy_blocks(y, dX)
    expected = _sequential_partial_fit(
        estimator, X_blocks, y_blocks, range(len(X_blocks)), **kwargs
    )
    assert fitted.n_iter_ == len(X_blocks)
    assert fitted.t_ == N_SAMPLES
    _assert_same_weights(fitted, expected)


@pytest.mark.parametrize(
    "chunk_rows, batch_size, drop_last, sizes",
    [
        (50, 16, False, [16, 16, 16, 2]),  # ceil(50 / 16) = 4 steps
        (50, 16, "merge", [16, 16, 18]),  # the short batch joins the one before
        (48, 16, False, [16, 16, 16]),  # chunk a multiple of batch_size
        (30, 64, False, [30]),  # batch larger than the chunk: one step
    ],
)
def test_steps_per_chunk(chunk_rows, batch_size, drop_last, sizes):
    """The batching of one partial_fit call, as docs/dask.rst describes it."""
    batcher = Minibatcher(batch_size, shuffle=False, drop_last=drop_last)
    bounds = batcher.bounds(chunk_rows)
    assert [stop - start for start, stop in bounds] == sizes
    if drop_last is False:
        assert len(bounds) == math.ceil(chunk_rows / min(batch_size, chunk_rows))

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(chunk_rows, 3)), rng.normal(size=chunk_rows)
    model = BatchMLPRegressor(
        hidden_layer_sizes=(4,), batch_size=batch_size, drop_last=drop_last
    )
    model.partial_fit(X, y)
    assert model.batch_size_ == min(batch_size, chunk_rows)
    assert model.t_ == chunk_rows


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("gradient_reduction", ["mean", "sum"])
def test_chunk_is_the_training_set_of_its_partial_fit(solver, gradient_reduction):
    """S in partial_fit is the chunk's weight: alpha * C / N on chunks of C rows
    takes the same steps as alpha in one epoch of fit over all N rows."""
    n, chunk, alpha = 240, 48, 0.5  # chunks a multiple of batch_size
    X, y = make_regression(n_samples=n, n_features=5, noise=1.0, random_state=0)
    y = y / y.std()
    params = {
        "hidden_layer_sizes": (8,),
        "solver": solver,
        "batch_size": 16,
        "gradient_reduction": gradient_reduction,
        "shuffle": False,  # the same batches in the same order
        "random_state": 0,
    }
    one_epoch = BatchMLPRegressor(alpha=alpha, max_iter=1, **params).fit(X, y)

    scaled = BatchMLPRegressor(alpha=alpha * chunk / n, **params)
    unscaled = BatchMLPRegressor(alpha=alpha, **params)
    for start in range(0, n, chunk):
        scaled.partial_fit(X[start : start + chunk], y[start : start + chunk])
        unscaled.partial_fit(X[start : start + chunk], y[start : start + chunk])

    _assert_same_weights(scaled, one_epoch)
    assert not np.allclose(unscaled.coefs_[0], one_epoch.coefs_[0], rtol=RTOL)


# -- BLAS threads in the workers --------------------------------------------


def test_worker_blas_threads_are_capped(client):
    workers = worker_addresses(client)
    assert len(workers) == 2
    for worker in workers:
        pools = _blas_threads_after_a_fit(client, worker)
        # numpy's and scipy's OpenBLAS (or whatever BLAS they were built with).
        assert pools, f"no BLAS library loaded in {worker}"
        assert set(pools.values()) == {1}, (worker, pools)
    # The caps came from the environment the Nanny gave each worker process.
    for key, value in BLAS_THREAD_CAPS.items():
        assert set(client.run(os.getenv, key).values()) == {value}


def test_threadpoolctl_caps_blas_in_running_workers(client):
    def limit_blas_threads(limit):
        # Defined here, not at module level, so that it travels by value.
        import threadpoolctl

        import skbatchnet  # noqa: F401  (loads numpy's and scipy's BLAS)

        threadpoolctl.threadpool_limits(limits=limit, user_api="blas")
        return threadpoolctl.threadpool_info()

    try:
        # Let the workers' BLAS use two threads, to see the cap take effect.
        for info in client.run(limit_blas_threads, 2).values():
            pools = _blas_threads(info)
            assert pools and set(pools.values()) == {2}

        for info in client.run(limit_blas_threads, 1).values():
            pools = _blas_threads(info)
            assert pools and set(pools.values()) == {1}
        # The limit holds for the whole worker process: later tasks see it.
        workers = worker_addresses(client)
        assert len(workers) == 2
        for worker in workers:
            assert set(_blas_threads_after_a_fit(client, worker).values()) == {1}
    finally:
        client.run(limit_blas_threads, 1)
