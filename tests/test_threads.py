"""Concurrency: predictions and fits in threads equal their sequential runs."""

import concurrent.futures
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    Snapshot,
    bitwise_equal,
    copied_weights,
    make_data,
    make_task,
)
from sklearn.base import clone

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor


def _run_together(n_threads, work):
    """Run ``work(i)`` in ``n_threads`` threads released at the same moment."""
    barrier = threading.Barrier(n_threads)

    def start(i):
        barrier.wait(timeout=60)
        return work(i)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n_threads) as pool:
        return list(pool.map(start, range(n_threads), timeout=600))


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "squared_error"])
def test_concurrent_predictions_equal_sequential(task):
    X, _, _ = make_data(n=300, n_features=6, seed=2, labels="balanced")
    Est, y, extra = make_task(task, X)
    est = Est(hidden_layer_sizes=(32, 16), max_iter=20, random_state=0, **extra)
    est.fit(X, y)
    rng = np.random.RandomState(7)
    chunks = []
    for i in range(24):
        rows = rng.randn(rng.randint(1, 120), 6)
        if i % 3 == 1:
            rows[rng.rand(*rows.shape) < 0.6] = 0.0
            rows = sp.csr_matrix(rows)
        elif i % 3 == 2:
            rows = rows.astype(np.float32)
        chunks.append(rows)
    methods = ["predict"] + (["predict_proba"] if Est is BatchMLPClassifier else [])
    expected = {
        (i, m): getattr(est, m)(c) for i, c in enumerate(chunks) for m in methods
    }

    def work(t):
        order = np.random.RandomState(t).permutation(len(chunks))
        out = []
        for _ in range(4):
            for i in order:
                for m in methods:
                    out.append(((i, m), getattr(est, m)(chunks[i])))
        return out

    results = _run_together(8, work)
    checked = 0
    for out in results:
        for key, value in out:
            assert value.dtype == expected[key].dtype
            assert np.array_equal(value, expected[key]), key
            checked += 1
    assert checked == 8 * 4 * len(expected)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize(
    "Est, solver", [(BatchMLPClassifier, "adam"), (BatchMLPRegressor, "sgd")]
)
def test_clones_fitted_in_threads_equal_sequential_fits(Est, solver, fmt):
    X, y_reg, y_cls = make_data(n=300, n_features=6, seed=4, labels="balanced")
    y = y_cls if Est is BatchMLPClassifier else y_reg
    X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X)) if fmt == "csr" else X
    base = Est(hidden_layer_sizes=(16,), solver=solver, batch_size=16, max_iter=15)
    sequential = [clone(base).set_params(random_state=i).fit(X, y) for i in range(4)]
    threaded = _run_together(
        4, lambda i: clone(base).set_params(random_state=i).fit(X, y)
    )
    for seq, thr in zip(sequential, threaded):
        Snapshot(seq).assert_matches(thr)
    # the seeds differ, so the comparison is not trivially between equal fits
    assert not bitwise_equal(
        copied_weights(sequential[0]),
        copied_weights(sequential[1]),
    )


def _blas_limits():
    from threadpoolctl import threadpool_info

    return sorted(
        (p["internal_api"], p["filepath"], p["num_threads"]) for p in threadpool_info()
    )


@pytest.mark.parametrize("batch_size", [1, 8, 200])
def test_fits_in_threads_leave_the_thread_limits_as_they_were(batch_size):
    """A fit sets no process-wide limit: two overlapping fits in threads, of
    small batches as of large ones, leave every thread pool as it was."""
    X, _, y = make_data(n=400, n_features=8, seed=4)
    before = _blas_limits()
    _run_together(
        2,
        lambda i: BatchMLPClassifier(
            batch_size=batch_size, max_iter=3, random_state=i, solver="sgd"
        ).fit(X, y),
    )
    assert _blas_limits() == before


def test_a_limit_the_caller_sets_is_kept_during_and_after_a_fit():
    from threadpoolctl import threadpool_info, threadpool_limits

    X, _, y = make_data(n=200, n_features=8, seed=5)

    class Watch(BatchMLPClassifier):
        def _score_output(self, output, y, sample_weight):
            seen.append({p["num_threads"] for p in threadpool_info()})
            return super()._score_output(output, y, sample_weight)

    seen = []
    with threadpool_limits(limits=1):
        Watch(batch_size=1, early_stopping=True, max_iter=2, random_state=0).fit(X, y)
        after = {p["num_threads"] for p in threadpool_info()}
    assert seen and all(s == {1} for s in seen) and after == {1}
